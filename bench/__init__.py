"""The benchmark: `make bench` (or `python -m bench [--quick]`); see docs/performance.md."""
