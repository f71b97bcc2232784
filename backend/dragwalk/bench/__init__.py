"""Reproducible benchmarks, run as ``dragwalk bench NAME``; each prints a table and writes JSON."""
