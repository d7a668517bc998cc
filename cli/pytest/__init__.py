"""`dtf run pytest` and `pytest --dtf`: the client side of distributed pytest."""
