"""Hostile-input tooling: capture builders, structural mutators and the invariant checker
shared by the hypothesis suite (tests/test_fuzz*.py) and the atheris harness (harness.py)."""
