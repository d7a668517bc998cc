"""Benchmark tasks: the harness that runs a workload in its own process (``harness``), the
built-in workloads, and the worker's side: the host's state, provenance, the summary."""
