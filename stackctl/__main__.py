"""`python -m stackctl` runs the CLI (the proxy unit uses this form)."""

from stackctl.cli import main

if __name__ == "__main__":
    main()
