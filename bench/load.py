"""`make load`: start the engine, load it with the locust file for a bounded time, print the figures.

Runs `dialer serve` (embedded store and dispatcher, simulated phone line, a demo key) on a free port of
127.0.0.1, waits for /health, runs `locust -f bench/locustfile.py --headless` against it for
--seconds with --users partners, then prints requests/s, failures and latency percentiles per
request kind from locust's own CSV, and stops the server. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "load-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer {url} within {seconds:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--spawn-rate", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    # Its own data folder: a load run neither reads nor grows `make run`'s ./var.
    env = {**os.environ, "DIALER_DATA_DIR": tempfile.mkdtemp(prefix="dialer-load-"),
           "DIALER_PORT": str(port), "DIALER_HOST": "127.0.0.1", "DIALER_DEMO_API_KEY": KEY,
           "DIALER_LOG_LEVEL": "WARNING", "MONGODB_URI": os.environ.get("MONGODB_URI", "")}
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen([str(bin_dir / "dialer"), "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(f"{host}/health", 30)
        with tempfile.TemporaryDirectory() as tmp:
            prefix = os.path.join(tmp, "load")
            subprocess.run([str(bin_dir / "locust"), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                            "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.seconds}s",
                            "--host", host, "--csv", prefix, "--only-summary", "--loglevel", "WARNING"],
                           env={**env, "DIALER_LOAD_API_KEY": KEY}, check=False, stdout=subprocess.DEVNULL)
            with open(prefix + "_stats.csv", newline="") as f:
                rows = list(csv.DictReader(f))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"make load: {args.users} partners for {args.seconds} s against {host} (embedded store, simulator)")
    print(f"  {'request':<18} {'count':>7} {'fail':>5} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    failures = 0
    for row in rows:
        failures += int(row["Failure Count"]) if row["Name"] == "Aggregated" else 0
        print(f"  {row['Name']:<18} {row['Request Count']:>7} {row['Failure Count']:>5} "
              f"{float(row['Requests/s']):>7.1f} {row['50%']:>7} {row['95%']:>7} {row['99%']:>7} "
              f"{float(row['Max Response Time']):>7.0f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
