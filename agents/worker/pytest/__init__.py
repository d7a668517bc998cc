"""Running pytest on workers: warm sessions (session.py, the child process) and the pool
that feeds them chunks and streams their reports (pool.py)."""
