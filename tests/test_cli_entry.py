"""The command line's entry points: `dialer` (the console script) and `python -m dialer` are one command."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_dialer_is_the_dialer_command():
    """`python -m dialer --help` failed ("No module named dialer.__main__"), as a user following Python habits finds."""
    out = subprocess.run([sys.executable, "-m", "dialer", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and "serve" in out.stdout


def test_a_chunk_size_out_of_range_is_refused_not_clamped(tmp_path):
    from dialer.cli import main as cli_main

    path = tmp_path / "c.csv"
    path.write_text("phone\n+12125550100\n")
    for size in ("0", "-3", "5000"):
        assert cli_main(["import-csv", str(path), "--batch", "64e5f12345abcdef98765432", "--chunk", size,
                         "--url", "http://127.0.0.1:9", "--key", "k"]) == 2


def test_serve_on_a_port_in_use_says_it_in_one_plain_line(tmp_path):
    """Found by an exploratory run: a second `dialer serve` on a taken port printed a traceback; then the line was
    asyncio's: "... error while attempting to bind on address ('127.0.0.1', N): address already in
    use", the address twice, once as a Python tuple."""
    import os
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DIALER_PORT": str(port), "DIALER_DATA_DIR": str(tmp_path)}
        out = subprocess.run([sys.executable, "-m", "dialer", "serve"], capture_output=True, text=True, timeout=120,
                             env=env)
    assert out.returncode == 1, out.stderr
    # Nothing started before the bind failed (the store and its embedded dispatcher were opened, then stopped).
    assert list(tmp_path.iterdir()) == [] and "dispatcher started" not in out.stderr
    assert "Traceback" not in out.stderr + out.stdout  # (it was one, before it was asyncio's line)
    [line] = [line for line in out.stderr.splitlines() if "cannot listen" in line]
    assert line == (f"cannot listen on 127.0.0.1:{port}: the address is already in use (another server?); "
                    "DIALER_PORT chooses another port")
