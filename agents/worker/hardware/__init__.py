"""Hardware detection for worker capabilities: real probes, parsers tested on captured
tool output. Every probe is optional: what cannot be detected is absent, with the reason
kept in ``Capabilities.notes`` and logged, and no probe ever raises into the worker."""
