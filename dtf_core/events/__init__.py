"""Events, one module per aggregate; ``codec`` encodes them and routes decoding by subject."""
