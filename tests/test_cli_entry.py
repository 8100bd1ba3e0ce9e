"""The command line's entry points: `dialer` (the console script) and `python -m dialer` are one command."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_dialer_is_the_dialer_command():
    """`python -m dialer --help` failed ("No module named dialer.__main__"), as a user following Python habits finds."""
    out = subprocess.run([sys.executable, "-m", "dialer", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and "serve" in out.stdout
