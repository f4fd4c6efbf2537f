"""tcpanalyze: what happened to these TCP connections, on both ends, and what is wrong."""

__version__ = "0.1.0"

# The modules every segment passes through: setup.py compiles them with mypyc where a C
# compiler is available (the rest is numpy, I/O, or runs once per capture).
COMPILED_MODULES = (
    "segment", "tracker", "zeek", "flows", "detectors", "fastpath", "whole_runs")


def core() -> str:
    """How this installation runs its per-segment core: "compiled", "pure Python", or
    "partly compiled" (a broken install: some modules shadowed by stale builds)."""
    import importlib
    from importlib.machinery import EXTENSION_SUFFIXES

    compiled = [(importlib.import_module(f"tcpanalyze.{name}").__file__ or "").endswith(
        tuple(EXTENSION_SUFFIXES)) for name in COMPILED_MODULES]
    if all(compiled):
        return "compiled"
    return "partly compiled" if any(compiled) else "pure Python"
