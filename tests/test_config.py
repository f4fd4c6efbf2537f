"""Configuration files: discovery, validation, command-line overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tcpanalyze.config import Config, ConfigError, find_config, load_config, merge_overrides
from tcpanalyze.gate import IgnoreRule
from tcpanalyze.settings import Settings


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_pyproject_table_with_both_spellings(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", """
[project]
name = "x"

[tool.tcpanalyze]
time-wait = 120
close_wait_threshold = 2.5
syn-flood-min-syns = 50
fail-on = ["high", "rst_teardown"]
format = "sarif"
baseline = "ci/tcp-baseline.json"

[[tool.tcpanalyze.ignore]]
kind = "rst_teardown"
port = 443

[[tool.tcpanalyze.ignore]]
address = "10.0.0.0/8"
capture = "lab-*.pcap"
""")
    config = load_config(start=tmp_path)
    assert config.path == str(tmp_path / "pyproject.toml")
    assert config.settings.time_wait == 120.0 and isinstance(config.settings.time_wait, float)
    assert config.settings.close_wait_threshold == 2.5
    assert config.settings.syn_flood_min_syns == 50
    assert config.settings.fin_timeout == Settings().fin_timeout  # untouched default
    assert config.fail_on == ["high", "rst_teardown"]
    assert config.policy.min_severity == "high" and config.policy.kinds == {"rst_teardown"}
    assert config.format == "sarif"
    assert config.baseline == str(tmp_path / "ci/tcp-baseline.json")  # relative to the file
    assert config.ignore == [IgnoreRule(kind="rst_teardown", port=443),
                             IgnoreRule(address="10.0.0.0/8", capture="lab-*.pcap")]


def test_discovery_walks_up_and_prefers_the_dotfile(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.tcpanalyze]\ntime-wait = 30\n")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_config(deep) == tmp_path / "pyproject.toml"
    # a pyproject.toml without our table does not stop the walk
    _write(tmp_path / "a" / "pyproject.toml", "[project]\nname = 'y'\n")
    assert find_config(deep) == tmp_path / "pyproject.toml"
    # a dotfile nearer wins, and in one directory the dotfile beats pyproject.toml
    _write(tmp_path / "a" / ".tcpanalyze.toml", "fin-timeout = 10\n")
    assert find_config(deep) == tmp_path / "a" / ".tcpanalyze.toml"
    _write(tmp_path / ".tcpanalyze.toml", "fin-timeout = 11\n")
    assert find_config(tmp_path) == tmp_path / ".tcpanalyze.toml"
    assert load_config(start=deep).settings.fin_timeout == 10.0


def test_no_config_gives_defaults(tmp_path: Path) -> None:
    if find_config(tmp_path) is not None:
        pytest.skip("a configuration file above the temporary directory")
    config = load_config(start=tmp_path)
    assert config == Config()


def test_explicit_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "elsewhere.toml", 'fail-on = "any"\n')
    assert load_config(path).fail_on == ["any"]
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(("text", "key", "message"), [
    ("time-wiat = 60", "time-wiat", "unknown key"),
    ('time-wait = "60"', "time-wait", "must be a number"),
    ("time-wait = true", "time-wait", "must be a number"),
    ("time-wait = -1", "time-wait", "must not be negative"),
    ("keepalive-probes = 2.5", "keepalive-probes", "must be an integer"),
    ('fail-on = ["hihg"]', "fail-on", "unknown --fail-on value 'hihg'"),
    ("fail-on = [1]", "fail-on", "list of strings"),
    ('format = "yaml"', "format", "must be one of"),
    ("baseline = 3", "baseline", "file path"),
    ('ignore = {kind = "rst_teardown"}', "ignore", "list of tables"),
    ('ignore = [{kind = "rst"}]', "ignore[0]", "unknown kind"),
    ('ignore = [{port = "https"}]', "ignore[0]", "port must be an integer"),
    ('ignore = [{host = "10.0.0.1"}]', "ignore[0]", "unknown key 'host'"),
    ('ignore = [{address = "10.0.0.300"}]', "ignore[0]", "not an IP address"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, key: str,
                                          message: str) -> None:
    path = _write(tmp_path / ".tcpanalyze.toml", text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path) and info.value.key == key
    assert str(info.value).startswith(f"{path}: key {key!r}: ")
    assert message in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path / ".tcpanalyze.toml", "time-wait = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_command_line_wins(tmp_path: Path) -> None:
    path = _write(tmp_path / ".tcpanalyze.toml", """
time-wait = 120
fin-timeout = 30
fail-on = ["high"]
format = "junit"
ignore = [{kind = "keepalive"}]
""")
    config = load_config(path)
    merged = merge_overrides(
        config, settings={"time-wait": 5, "fin_timeout": None}, fail_on=["rst_teardown"],
        ignore=[IgnoreRule(port=22)], format="json", baseline="b.json")
    assert merged.settings.time_wait == 5.0
    assert merged.settings.fin_timeout == 30.0  # None = not given on the command line
    assert merged.fail_on == ["rst_teardown"]
    assert merged.ignore == [IgnoreRule(kind="keepalive"), IgnoreRule(port=22)]
    assert merged.format == "json" and merged.baseline == "b.json"
    unchanged = merge_overrides(config)
    assert unchanged.fail_on == ["high"] and unchanged.format == "junit"
    assert config.settings.time_wait == 120.0  # the loaded config is not modified
    with pytest.raises(ConfigError, match="unknown setting"):
        merge_overrides(config, settings={"time_wiat": 1})
    with pytest.raises(ConfigError, match="--fail-on"):
        merge_overrides(config, fail_on=["bogus"])


def test_every_setting_is_a_config_key(tmp_path: Path) -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    switches = {"vlan_tracking"}  # true/false, the others numbers
    lines = [f"{key.replace('_', '-')} = {'true' if key in switches else 7}" for key in names]
    config = load_config(_write(tmp_path / ".tcpanalyze.toml", "\n".join(lines) + "\n"))
    assert all(getattr(config.settings, key) == (True if key in switches else 7)
               for key in names)
