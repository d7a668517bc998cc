"""The platform layer: starting, watching and ending process trees, and the signals daemons
stop on, on Linux, macOS and Windows (decisions in ``plan.py``, effects beside it)."""
