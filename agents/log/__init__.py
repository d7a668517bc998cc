"""The event log: the port agents append to and tail, its JetStream and in-memory
adapters, the batching appender, folding a tail into a board, and snapshots."""
