"""What crosses NATS between processes outside the event log: the api's client."""
