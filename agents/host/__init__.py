"""Hosting the agents: settings, launching an agent, and the supervisor behind `dtf up`."""
