"""Folds of events into state: the in-memory board and the DuckDB tables.

PYTEST_DONT_REWRITE: imported before pytest starts (`dtf run pytest`), so pytest must not
try to rewrite it (it would warn, an error under `filterwarnings = error`).
"""
