"""`dtf ci`: run the suite on DTF from a CI job, write reports, talk to the CI provider."""
