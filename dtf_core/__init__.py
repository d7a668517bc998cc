"""DTF's pure domain: events, commands, decide/evolve and placement. No IO here."""
