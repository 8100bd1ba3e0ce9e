"""Settings: one dataclass, read from a YAML file in config/ and overridden by the environment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from dialer.settings_checks import check, env_name, to_bool

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"

# setting name -> environment variable
ENV_NAMES = {
    "host": "DIALER_HOST",
    "port": "DIALER_PORT",
    "mongodb_uri": "MONGODB_URI",
    "data_dir": "DIALER_DATA_DIR",
    "sqlite_synchronous": "DIALER_SQLITE_SYNCHRONOUS",
    "sqlite_busy_timeout_ms": "DIALER_SQLITE_BUSY_TIMEOUT_MS",
    "database": "DIALER_DATABASE",
    "default_region": "DIALER_DEFAULT_REGION",
    "strict_numbers": "DIALER_STRICT_NUMBERS",
    "max_body_bytes": "DIALER_MAX_BODY_BYTES",
    "max_header_bytes": "DIALER_MAX_HEADER_BYTES",
    "max_records_per_request": "DIALER_MAX_RECORDS",
    "warm_body_parser": "DIALER_WARM_BODY_PARSER",
    "chunk_size": "DIALER_CHUNK_SIZE",
    "idempotency_ttl_seconds": "DIALER_IDEMPOTENCY_TTL",
    "idempotency_claim_seconds": "DIALER_IDEMPOTENCY_CLAIM_SECONDS",
    "intake_lease_seconds": "DIALER_INTAKE_LEASE_SECONDS",
    "admin_token": "DIALER_ADMIN_TOKEN",
    "demo_api_key": "DIALER_DEMO_API_KEY",
    "public_base_url": "DIALER_PUBLIC_BASE_URL",
    "log_level": "DIALER_LOG_LEVEL",
    "provider": "DIALER_PROVIDER",
    "embedded_dispatcher": "DIALER_EMBEDDED_DISPATCHER",
    "calls_per_second": "DIALER_CPS",
    "max_concurrent_calls": "DIALER_MAX_CONCURRENT",
    "poll_interval_seconds": "DIALER_POLL_INTERVAL",
    "worker_metrics_port": "DIALER_WORKER_METRICS_PORT",
    "lease_seconds": "DIALER_LEASE_SECONDS",
    "chain_min_success_seconds": "DIALER_CHAIN_MIN_SUCCESS_SECONDS",
    "chain_verdict_seconds": "DIALER_CHAIN_VERDICT_SECONDS",
    "twilio_account_sid": "TWILIO_ACCOUNT_SID",
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
    "twilio_api_base": "TWILIO_API_BASE",
    "twilio_timeout_seconds": "TWILIO_TIMEOUT",
    "machine_detection": "DIALER_MACHINE_DETECTION",
    "sim_time_scale": "DIALER_SIM_TIME_SCALE",
    "sim_outcomes": "DIALER_SIM_OUTCOMES",
    "sim_mean_duration_seconds": "DIALER_SIM_MEAN_DURATION",
    "webhooks_allow_insecure": "DIALER_WEBHOOKS_ALLOW_INSECURE",
    "webhook_retry_delays": "DIALER_WEBHOOK_RETRY_DELAYS",
    "webhook_timeout_seconds": "DIALER_WEBHOOK_TIMEOUT",
    "webhook_senders_per_endpoint": "DIALER_WEBHOOK_SENDERS_PER_ENDPOINT",
    "webhook_retention_days": "DIALER_WEBHOOK_RETENTION_DAYS",
}
SECRETS = frozenset({"admin_token", "demo_api_key", "twilio_auth_token", "mongodb_uri"})
# A retry delay beyond this is a typo (or inf / nan, which float() reads): a message would never be
# scheduled again, its every attempt failing to be recorded. Svix's longest is 10 h.
MAX_WEBHOOK_DELAY = 30 * 24 * 3600.0
# A retention beyond a century is a typo (or inf, which float() reads, and which no date can be computed from).
MAX_WEBHOOK_RETENTION_DAYS = 36_500.0


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    mongodb_uri: str = ""
    data_dir: str = "var"  # the SQLite file's folder (relative to the working directory); ":memory:" keeps nothing
    sqlite_synchronous: str = "normal"  # normal: a process crash loses nothing; full: nor does a power loss
    sqlite_busy_timeout_ms: int = 10_000  # how long a write waits for another process's lock, then 503
    database: str = "dialer"
    default_region: str = "US"
    strict_numbers: bool = False
    max_body_bytes: int = 64 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_records_per_request: int = 100_000
    warm_body_parser: bool = True  # start the large-body parser process with the server, not on the first body
    chunk_size: int = 1000
    idempotency_ttl_seconds: int = 86_400
    idempotency_claim_seconds: float = 30.0  # a request that died unanswered holds its key this long
    intake_lease_seconds: float = 60.0  # an enrollment intake whose process died waits this long to resume
    admin_token: str = ""
    demo_api_key: str = ""
    public_base_url: str = ""
    log_level: str = "INFO"
    provider: str = "simulator"
    embedded_dispatcher: str = "auto"
    calls_per_second: float = 1.0
    max_concurrent_calls: int = 100
    poll_interval_seconds: float = 0.5
    worker_metrics_port: int = 9108
    lease_seconds: int = 120
    chain_min_success_seconds: int = 20
    chain_verdict_seconds: int = 60
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_api_base: str = ""
    twilio_timeout_seconds: float = 10.0
    machine_detection: bool = False
    sim_time_scale: float = 10.0
    sim_outcomes: str = "answered=0.6,busy=0.1,no_answer=0.2,failed=0.05,machine=0.05"
    sim_mean_duration_seconds: float = 45.0
    # Partner webhooks: http:// to loopback and private addresses allowed (trying it out only: `make run`).
    webhooks_allow_insecure: bool = False
    webhook_retry_delays: str = "0,5,300,1800,7200,18000,36000,36000"  # seconds before each attempt (Svix's)
    webhook_timeout_seconds: float = 15.0
    webhook_senders_per_endpoint: int = 4
    webhook_retention_days: float = 30.0  # delivered and failed messages are purged this long after their last change

    @property
    def backend(self) -> str:
        """mongodb when MONGODB_URI is set, else the embedded store: sqlite."""
        return "mongodb" if self.mongodb_uri else "sqlite"

    @property
    def embedded(self) -> bool:
        return self.backend == "sqlite"

    @property
    def private(self) -> bool:
        """The store lives in this process only (an SQLite `:memory:` database): no other process can share it."""
        return self.embedded and self.data_dir == ":memory:"

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (`:memory:` kept as is: a private in-memory database)."""
        if self.data_dir == ":memory:":
            return ":memory:"
        return str(Path(self.data_dir) / "dialer.db")

    @property
    def webhook_delays(self) -> tuple[float, ...]:
        """DIALER_WEBHOOK_RETRY_DELAYS as numbers: the delay before each attempt, the first after the event."""
        try:
            delays = tuple(float(part) for part in self.webhook_retry_delays.split(",") if part.strip())
        except ValueError:
            raise ValueError("DIALER_WEBHOOK_RETRY_DELAYS must be seconds separated by commas") from None
        if not delays or not all(0 <= d <= MAX_WEBHOOK_DELAY for d in delays):  # nan and inf fail too
            raise ValueError("DIALER_WEBHOOK_RETRY_DELAYS must name at least one delay, each from 0 to "
                             f"{MAX_WEBHOOK_DELAY:.0f} seconds (30 days)")
        return delays

    @property
    def webhook_retention(self) -> dt.timedelta:
        """DIALER_WEBHOOK_RETENTION_DAYS as a duration: how long a delivered or failed message is kept."""
        days = self.webhook_retention_days
        if not 0 < days <= MAX_WEBHOOK_RETENTION_DAYS:  # nan and inf fail too
            raise ValueError(f"DIALER_WEBHOOK_RETENTION_DAYS must be a positive number of days, at most "
                             f"{MAX_WEBHOOK_RETENTION_DAYS:.0f} (got {days!r})")
        return dt.timedelta(days=days)

    @property
    def runs_embedded_dispatcher(self) -> bool:
        if self.embedded_dispatcher == "auto":
            return self.embedded
        return _to_bool(self.embedded_dispatcher)

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """File (default config/default.yaml, or DIALER_CONFIG) < environment < explicit overrides."""
        env = os.environ if env is None else env
        named = path or env.get("DIALER_CONFIG")
        path = Path(named or DEFAULT_CONFIG)
        values: dict[str, Any] = {}
        if path.exists():
            values.update(_read_file(path))
        elif named:  # a mistyped name would start on the defaults (the simulator, not Twilio) without a word
            raise ValueError(f"the settings file {path} does not exist (named by --config or DIALER_CONFIG)")
        for name, var in ENV_NAMES.items():
            if var in env:
                values[name] = env[var]
        values.update(overrides)
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown settings in {path}: {sorted(unknown)}")
        settings = cls(**{k: _coerce(known[k].type, v, k) for k, v in values.items()})
        check(settings)  # a value out of its range stops the start here, in one line naming its variable
        return settings

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: secrets shown only as set / unset."""
        out = dataclasses.asdict(self)
        for name in SECRETS:
            out[name] = "<set>" if out[name] else ""
        return out


def _read_file(path: Path) -> dict[str, Any]:
    """The settings file's keys; a file that is not a YAML mapping is one line naming it (it was a traceback)."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the settings file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or "a syntax error"  # never the text around it: it may hold a secret
        raise ValueError(f"the settings file {path} is not valid YAML{at}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"the settings file {path} must be a mapping of setting: value, not a {type(loaded).__name__}")
    return loaded


def _to_bool(value: Any) -> bool:
    return to_bool("embedded_dispatcher", value)


def _coerce(type_name: str, value: Any, name: str) -> Any:
    if type_name == "bool":
        return to_bool(name, value)  # its own message: what a switch may be
    try:
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
        return "" if value is None else str(value)
    except (TypeError, ValueError):
        kind = {"int": "a whole number", "float": "a number"}.get(type_name, type_name)
        raise ValueError(f"{env_name(name)} must be {kind}, not {value!r}") from None
