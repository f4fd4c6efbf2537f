"""tcpanalyze: what happened to these TCP connections, on both ends, and what is wrong."""

__version__ = "0.1.0"

# The modules every segment passes through: setup.py compiles them with mypyc where a C
# compiler is available (the rest is numpy, I/O, or runs once per capture).
COMPILED_MODULES = (
    "segment", "tracker", "zeek", "flows", "detectors", "fastpath", "whole_runs", "analysis",
    "batch", "records", "settings", "assignment", "ledger")


def core() -> str:
    """How this installation runs its per-segment core: "compiled", "pure Python", or
    "partly compiled" (a broken install: some modules shadowed by stale builds). Found
    without importing the modules (whole_runs would load numpy, which a live run never
    needs)."""
    from importlib.machinery import EXTENSION_SUFFIXES
    from importlib.util import find_spec

    origins = [getattr(find_spec(f"tcpanalyze.{name}"), "origin", None) or ""
               for name in COMPILED_MODULES]
    compiled = [origin.endswith(tuple(EXTENSION_SUFFIXES)) for origin in origins]
    if all(compiled):
        return "compiled"
    return "partly compiled" if any(compiled) else "pure Python"
