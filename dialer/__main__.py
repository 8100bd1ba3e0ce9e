"""`python -m dialer`: the same command line as `dialer` (dialer/cli.py)."""

from dialer.cli import main

main()
