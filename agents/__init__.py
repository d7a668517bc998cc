"""IO shells around the pure core: NATS, processes, DuckDB."""
