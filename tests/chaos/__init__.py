"""A seeded chaos run: two bridges on one Redis against a faulty fake store, then the invariants.

Run it with `make chaos` or `python -m tests.chaos --help`.
"""
