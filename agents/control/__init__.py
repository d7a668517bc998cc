"""The control plane's agents: api (commands and queries), scheduler, recovery,
projector, leadership, and the plans they carry out."""
