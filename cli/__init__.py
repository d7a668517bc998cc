"""The `dtf` command line: parse, load settings, call a library function, render.

PYTEST_DONT_REWRITE: imported before pytest starts (`dtf run pytest`), so pytest must not
try to rewrite it (it would warn, an error under `filterwarnings = error`).
"""
