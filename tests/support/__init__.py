"""Helpers every test level shares."""
