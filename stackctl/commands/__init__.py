"""One module per command (or family of commands); cli.py imports them lazily."""
