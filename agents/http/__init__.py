"""The HTTP agent: the REST API (and, to come, the dashboard) over the same commands and
queries the CLI sends, each under the caller's own credential."""
