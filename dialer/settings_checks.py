"""Every setting's allowed values, checked once when the settings are loaded (dialer/settings.py).

A value out of its range stopped nothing before: `DIALER_POLL_INTERVAL=-1` started a server whose dispatcher
grew to 14 GB in minutes and ignored Ctrl-C, `DIALER_CHUNK_SIZE=0` one that answered every addCallsToBatch
with a 500, `DIALER_PORT=99999` one that listened on another port than the one it logged, and
`DIALER_LOG_LEVEL=verbose`, `DIALER_CPS=nan` or `DIALER_PROVIDER=twillio` a traceback. `check` raises a
ValueError whose message is one line naming the environment variable and what it must be; the value is shown
for plain settings, never for a secret's (SECRETS: the admin token, the demo key, Twilio's auth token, the
MongoDB URI with its password).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from dialer.settings import Settings

BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False,
            "": False}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SYNCHRONOUS = ("normal", "full", "off", "extra")
PROVIDERS = ("simulator", "twilio")
# name: (lowest, highest, what it is); a bound of None is open. The highest keep dates computable (a TTL of 1e14 s
# overflowed timedelta at start) and sizes sane. Floats must also be finite (nan and inf fail).
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "port": (1, 65_535, "a TCP port from 1 to 65535"),
    "worker_metrics_port": (0, 65_535, "a TCP port from 1 to 65535, or 0 for none"),
    "sqlite_busy_timeout_ms": (0, 3_600_000, "milliseconds from 0 to 3600000 (an hour)"),
    "max_body_bytes": (1024, 2**32, "a number of bytes from 1024 to 4294967296 (4 GiB)"),
    "max_header_bytes": (1024, 16 * 2**20, "a number of bytes from 1024 to 16777216 (16 MiB)"),
    "max_records_per_request": (1, 10_000_000, "a number of records from 1 to 10000000"),
    "chunk_size": (1, 100_000, "a number of records from 1 to 100000"),
    "idempotency_ttl_seconds": (1, 365 * 86_400, "a number of seconds from 1 to 31536000 (a year)"),
    "idempotency_claim_seconds": (0.001, 86_400, "a positive number of seconds, at most 86400"),
    "intake_lease_seconds": (0.001, 86_400, "a positive number of seconds, at most 86400"),
    "calls_per_second": (0.001, 100_000, "a positive number of calls per second, at most 100000"),
    "max_concurrent_calls": (1, 1_000_000, "a number of calls from 1 to 1000000"),
    "poll_interval_seconds": (0.001, 3_600, "a positive number of seconds, at most 3600"),
    "lease_seconds": (1, 86_400, "a number of seconds from 1 to 86400"),
    "chain_min_success_seconds": (0, 86_400, "a number of seconds from 0 to 86400"),
    "chain_verdict_seconds": (0, 86_400, "a number of seconds from 0 to 86400"),
    "twilio_timeout_seconds": (0.001, 3_600, "a positive number of seconds, at most 3600"),
    "sim_time_scale": (0.001, 1_000_000, "a positive factor, at most 1000000"),
    "sim_mean_duration_seconds": (0, 86_400, "a number of seconds from 0 to 86400"),
    "webhook_timeout_seconds": (0.001, 3_600, "a positive number of seconds, at most 3600"),
    "webhook_senders_per_endpoint": (1, 1_000, "a number of senders from 1 to 1000"),
}
NOT_EMPTY = ("host", "data_dir", "database")
URLS = ("public_base_url", "twilio_api_base")  # empty, or http(s)://host[...]


def env_name(name: str) -> str:
    from dialer.settings import ENV_NAMES

    return ENV_NAMES.get(name, name)


def to_bool(name: str, value: Any) -> bool:
    """A switch: true/false, yes/no, on/off, 1/0 (any case; empty is false). `maybe` was read as false."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in BOOLEANS:
        raise ValueError(f"{env_name(name)} must be true or false (or yes/no, on/off, 1/0), not {str(value)!r}")
    return BOOLEANS[word]


def check(settings: "Settings") -> None:
    """Raise ValueError (one line naming the variable) for the first setting out of its range."""
    s = settings
    for name, (low, high, what) in RANGES.items():
        value = getattr(s, name)
        if (isinstance(value, float) and not math.isfinite(value)) or (low is not None and value < low) \
                or (high is not None and value > high):
            raise ValueError(f"{env_name(name)} must be {what}, not {value!r}")
    for name in NOT_EMPTY:
        if not str(getattr(s, name)).strip():
            raise ValueError(f"{env_name(name)} must not be empty")
    if s.log_level.upper() not in LOG_LEVELS:
        raise ValueError(f"DIALER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r}")
    if s.sqlite_synchronous.lower() not in SYNCHRONOUS:
        raise ValueError(f"DIALER_SQLITE_SYNCHRONOUS must be normal or full (or off, extra), not {s.sqlite_synchronous!r}")
    if s.provider not in PROVIDERS:
        raise ValueError(f"DIALER_PROVIDER must be simulator or twilio, not {s.provider!r}")
    if s.embedded_dispatcher != "auto" and str(s.embedded_dispatcher).strip().lower() not in BOOLEANS:
        raise ValueError(f"DIALER_EMBEDDED_DISPATCHER must be auto, true or false, not {s.embedded_dispatcher!r}")
    _region(s.default_region)
    for name in URLS:
        _url(name, getattr(s, name))
    if s.mongodb_uri and not s.mongodb_uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("MONGODB_URI must begin with mongodb:// or mongodb+srv:// (its value is not shown: it may "
                         "hold a password)")
    _outcomes(s.sim_outcomes)
    s.webhook_delays, s.webhook_retention  # noqa: B018 (each raises its own one-line ValueError)


def check_dispatcher(settings: "Settings") -> None:
    """What a process that places calls needs besides (`dialer worker`, `dialer serve` with its dispatcher)."""
    s = settings
    if s.provider == "twilio":
        if not s.twilio_account_sid or not s.twilio_auth_token:
            raise ValueError("DIALER_PROVIDER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if not s.public_base_url:
            raise ValueError("DIALER_PROVIDER=twilio needs DIALER_PUBLIC_BASE_URL (where Twilio reaches our webhooks)")


def _region(region: str) -> None:
    import phonenumbers

    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"DIALER_DEFAULT_REGION must be a two-letter region code such as US or GB, not {region!r}")


def _url(name: str, value: str) -> None:
    if not value:
        return
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{env_name(name)} must be an http:// or https:// URL with a host, such as "
                         f"https://dialer.example.com, not {value!r}")


def _outcomes(spec: str) -> None:
    from workers.telephony.simulator import OUTCOMES

    weights = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if name not in OUTCOMES or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"DIALER_SIM_OUTCOMES must be outcome=weight pairs separated by commas (outcomes: "
                             f"{', '.join(OUTCOMES)}; weights at least 0), not {spec!r}")
        weights.append(weight)
    if sum(weights) <= 0:
        raise ValueError(f"DIALER_SIM_OUTCOMES needs at least one positive weight, not {spec!r}")
