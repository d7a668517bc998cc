"""The `dtf` command line: parse, load settings, call a library function, render."""
