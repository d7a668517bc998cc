"""A worker host: the worker agent, its runner, capabilities and hardware probes, GPU
slots, code packs, reports back, and warm pytest sessions."""
