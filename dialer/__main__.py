"""`python -m dialer`: the same command line as `dialer` (dialer/cli.py), exit status included."""

import sys

from dialer.cli import main

sys.exit(main())
