"""Benchmarks: ``scripts/bench`` (or ``python -m bench [NAME...]``) runs them and prints medians."""
