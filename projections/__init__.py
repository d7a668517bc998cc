"""Folds of events into state: the in-memory board and the DuckDB tables."""
