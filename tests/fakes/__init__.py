"""Fake upstream servers (BigCommerce, ...) for tests and benchmarks."""
