"""NATS plumbing: connecting, running nats-server (alone or clustered), TLS, consumers,
served tails and object stores. Knows nothing of agents' decisions."""
