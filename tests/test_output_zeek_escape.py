"""Zeek field escaping: the printable-ASCII shortcut escapes what the rule says."""

from __future__ import annotations

from tcpanalyze.output.zeek import EMPTY_FIELD, UNSET_FIELD, escape


def by_the_rule(value: str) -> str:
    # Zeek's ASCII writer: backslash, the tab separator and anything outside ' '..'~'
    # become \xNN of their UTF-8 bytes; a field equal to a marker is escaped whole
    if value == "":
        return EMPTY_FIELD
    text = "".join("".join(f"\\x{b:02x}" for b in ch.encode("utf-8"))
                   if ch == "\\" or ch == "\t" or not " " <= ch <= "~" else ch for ch in value)
    if text in (UNSET_FIELD, EMPTY_FIELD):
        text = "".join(f"\\x{b:02x}" for b in text.encode())
    return text


def test_every_character_alone_and_in_a_field() -> None:
    for code in [*range(0x300), 0x2028, 0xFEFF, 0x1F600]:
        ch = chr(code)
        for value in (ch, f"10.0.0.1{ch}:80", ch * 3):
            assert escape(value) == by_the_rule(value), hex(code)


def test_markers_and_ordinary_fields() -> None:
    assert escape("-") == "\\x2d" and escape("(empty)") == "\\x28\\x65\\x6d\\x70\\x74\\x79\\x29"
    assert escape("") == "(empty)"
    assert escape("ShADadFf") == "ShADadFf" and escape("fd00::1") == "fd00::1"
    assert escape("a\\b") == "a\\x5cb" and escape("a\tb") == "a\\x09b"
    assert escape("\x7f") == "\\x7f" and escape("\u00e9") == "\\xc3\\xa9"
