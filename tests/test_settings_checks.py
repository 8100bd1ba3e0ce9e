"""Every DIALER_* variable with a bad value stops `dialer serve` and `dialer worker` at start, in one line naming
the variable, never a traceback and never a secret's value (dialer/settings_checks.py). Found by an exploratory
run: most of these started a server that failed later (`DIALER_CHUNK_SIZE=0`: every addCallsToBatch a 500;
`DIALER_POLL_INTERVAL=-1`: a dispatcher that grew to 14 GB and ignored Ctrl-C; `DIALER_PORT=99999`: listening
on another port than the one logged), the rest printed a traceback (`DIALER_LOG_LEVEL=verbose`, `DIALER_CPS=nan`,
`DIALER_PROVIDER=twilio` without its credentials)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from dialer.cli import main as cli_main
from dialer.settings import Settings
from tests.crash_harness import free_port

BAD = [
    ("DIALER_PORT", "99999"), ("DIALER_PORT", "0"), ("DIALER_PORT", ""), ("DIALER_PORT", "eighty"),
    ("DIALER_HOST", ""), ("DIALER_DATA_DIR", ""),
    ("DIALER_WORKER_METRICS_PORT", "-1"), ("DIALER_SQLITE_BUSY_TIMEOUT_MS", "-5"),
    ("DIALER_SQLITE_SYNCHRONOUS", "sometimes"), ("DIALER_DEFAULT_REGION", "ZZ"), ("DIALER_DEFAULT_REGION", ""),
    ("DIALER_STRICT_NUMBERS", "maybe"), ("DIALER_WARM_BODY_PARSER", "2"), ("DIALER_MACHINE_DETECTION", "sure"),
    ("DIALER_WEBHOOKS_ALLOW_INSECURE", "please"), ("DIALER_EMBEDDED_DISPATCHER", "sometimes"),
    ("DIALER_MAX_BODY_BYTES", "-1"), ("DIALER_MAX_BODY_BYTES", "0"), ("DIALER_MAX_HEADER_BYTES", "-1"),
    ("DIALER_MAX_RECORDS", "0"), ("DIALER_CHUNK_SIZE", "0"), ("DIALER_CHUNK_SIZE", "-1"),
    ("DIALER_IDEMPOTENCY_TTL", "-1"), ("DIALER_IDEMPOTENCY_CLAIM_SECONDS", "0"),
    ("DIALER_INTAKE_LEASE_SECONDS", "nan"), ("DIALER_LOG_LEVEL", "verbose"), ("DIALER_LOG_LEVEL", ""),
    ("DIALER_PROVIDER", "twillio"), ("DIALER_CPS", "0"), ("DIALER_CPS", "-1"), ("DIALER_CPS", "nan"),
    ("DIALER_CPS", "inf"), ("DIALER_MAX_CONCURRENT", "0"), ("DIALER_POLL_INTERVAL", "0"),
    ("DIALER_POLL_INTERVAL", "-1"), ("DIALER_LEASE_SECONDS", "0"), ("DIALER_CHAIN_MIN_SUCCESS_SECONDS", "-1"),
    ("DIALER_CHAIN_VERDICT_SECONDS", "-1"), ("TWILIO_TIMEOUT", "0"), ("TWILIO_TIMEOUT", "inf"),
    ("TWILIO_API_BASE", "api.twilio.com"), ("DIALER_PUBLIC_BASE_URL", "dialer.example.com"),
    ("DIALER_PUBLIC_BASE_URL", "ftp://dialer.example.com"), ("DIALER_SIM_TIME_SCALE", "0"),
    ("DIALER_SIM_MEAN_DURATION", "-1"), ("DIALER_SIM_OUTCOMES", "bogus"), ("DIALER_SIM_OUTCOMES", "answered=0"),
    ("DIALER_SIM_OUTCOMES", "answered=-1,busy=2"), ("DIALER_SIM_OUTCOMES", "answered=x"),
    ("DIALER_WEBHOOK_TIMEOUT", "0"), ("DIALER_WEBHOOK_SENDERS_PER_ENDPOINT", "0"),
    ("DIALER_WEBHOOK_RETRY_DELAYS", "soon"), ("DIALER_WEBHOOK_RETENTION_DAYS", "0"),
    ("DIALER_IDEMPOTENCY_TTL", "99999999999999"), ("DIALER_MAX_CONCURRENT", "99999999999999999999"),
    ("DIALER_MAX_RECORDS", "1000000000000"), ("DIALER_MAX_BODY_BYTES", "1" + "0" * 30),
]
SECRETS = {"TWILIO_AUTH_TOKEN": "twilio-secret-0451", "DIALER_ADMIN_TOKEN": "admin-secret-0451",
           "DIALER_DEMO_API_KEY": "demo-secret-0451", "TWILIO_ACCOUNT_SID": "AC0451"}


def _start(command: str, env: dict[str, str], monkeypatch, capsys, tmp_path) -> tuple[int, str]:
    """`dialer COMMAND` with these variables; its ports are taken, so that a start the settings did not stop ends
    at once (exit 1, cannot listen) instead of serving for ever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        monkeypatch.setenv("DIALER_PORT", port)
        monkeypatch.setenv("DIALER_WORKER_METRICS_PORT", port)
        monkeypatch.setenv("DIALER_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("DIALER_WARM_BODY_PARSER", "false")
        for name, value in {**SECRETS, **env}.items():
            monkeypatch.setenv(name, value)
        code = cli_main(["--config", "/dev/null", command])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("name, value", BAD)
def test_a_bad_value_stops_the_start_in_one_line_naming_the_variable(name, value, command, monkeypatch, capsys,
                                                                    tmp_path):
    code, out = _start(command, {name: value}, monkeypatch, capsys, tmp_path)
    assert code == 2, out
    [line] = out.splitlines()
    assert line.startswith(f"bad settings: {name}") and "Traceback" not in out
    assert not any(secret in out for secret in SECRETS.values())
    assert list(tmp_path.iterdir()) == []  # refused before anything opened the store


def test_a_mongodb_uri_without_its_scheme_is_refused_without_showing_its_password(monkeypatch, capsys, tmp_path):
    code, out = _start("serve", {"MONGODB_URI": "http://dialer:pa55word@db.internal/dialer"}, monkeypatch, capsys,
                       tmp_path)
    assert code == 2 and out.startswith("bad settings: MONGODB_URI must begin with mongodb://")
    assert "pa55word" not in out


@pytest.mark.parametrize("env, needs", [
    ({"DIALER_PROVIDER": "twilio", "TWILIO_AUTH_TOKEN": ""}, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
    ({"DIALER_PROVIDER": "twilio"}, "DIALER_PUBLIC_BASE_URL"),
])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_twilio_without_what_it_needs_is_one_line_not_a_traceback(env, needs, command, monkeypatch, capsys, tmp_path):
    """`dialer serve` printed the ValueError's traceback from inside aiohttp's start-up, after opening the store."""
    code, out = _start(command, env, monkeypatch, capsys, tmp_path)
    [line] = out.splitlines()
    assert code == 2 and line.startswith(f"bad settings: DIALER_PROVIDER=twilio needs {needs}"), out
    assert not any(secret in out for secret in SECRETS.values())


def test_a_server_without_its_dispatcher_needs_no_twilio_credentials():
    settings = Settings.load(env={"DIALER_PROVIDER": "twilio", "DIALER_EMBEDDED_DISPATCHER": "false"})
    assert settings.provider == "twilio" and not settings.runs_embedded_dispatcher


def test_good_values_in_every_spelling_are_read():
    settings = Settings.load(env={"DIALER_STRICT_NUMBERS": "YES", "DIALER_MACHINE_DETECTION": "", "DIALER_LOG_LEVEL":
                                  "debug", "DIALER_DEFAULT_REGION": "gb", "DIALER_PUBLIC_BASE_URL": "https://d.example",
                                  "DIALER_WORKER_METRICS_PORT": "0", "DIALER_SIM_OUTCOMES": "answered=1,busy=0"})
    assert settings.strict_numbers is True and settings.machine_detection is False


def test_a_worker_whose_metrics_port_is_taken_says_it_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DIALER_WORKER_METRICS_PORT": str(port), "DIALER_DATA_DIR": str(tmp_path)}
        out = subprocess.run([sys.executable, "-m", "dialer", "worker"], capture_output=True, text=True, timeout=120,
                             env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot listen on 127.0.0.1:{port} for /metrics" in out.stderr
    assert "DIALER_WORKER_METRICS_PORT chooses another port" in out.stderr


@pytest.mark.parametrize("content, says", [
    ("port: [1,\nadmin_token: s3cret-in-the-file\n", "is not valid YAML (line 3"),
    ("- port\n- 8080\n", "must be a mapping of setting: value, not a list"),
    (None, "cannot read the settings file"),  # a folder
])
def test_a_settings_file_that_is_not_a_yaml_mapping_is_one_line(content, says, tmp_path, capsys):
    """A YAML syntax error in the settings file was a traceback (yaml.parser.ParserError), a list a line about
    "dictionary update sequence element #0", a folder an IsADirectoryError traceback."""
    path = tmp_path / "settings.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    code = cli_main(["--config", str(path), "serve"])
    err = capsys.readouterr().err
    [line] = err.splitlines()
    assert code == 2 and line.startswith(f"bad settings: ") and says in line and str(path) in line, err
    assert "s3cret" not in err


@pytest.mark.parametrize("command", ["serve", "workspace-list"])
def test_a_mongodb_that_cannot_be_reached_is_one_line_without_the_password(command, tmp_path):
    """A MongoDB server that is not there was a 90-line ServerSelectionTimeoutError traceback."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        env = {**os.environ, "MONGODB_URI": f"mongodb://dialer:pa55w0rd@127.0.0.1:{port}/dialer",
               "DIALER_LEASE_SECONDS": "4", "DIALER_PORT": str(free_port()), "DIALER_WARM_BODY_PARSER": "false"}
        out = subprocess.run([sys.executable, "-m", "dialer", "--config", "/dev/null", command],
                             capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    [line] = [line for line in out.stderr.splitlines() if not line.startswith("{")]
    assert "cannot use MongoDB (MONGODB_URI, database 'dialer'): ServerSelectionTimeoutError" in line
    assert "pa55w0rd" not in out.stderr + out.stdout
