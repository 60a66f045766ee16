"""Benchmarks that print JSON and a table; numbers for docs/benchmarks.md come from here."""
