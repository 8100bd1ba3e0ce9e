"""The dialer: serve the API, run dispatchers, manage tenants, import CSV files and run batches.

`dialer` (click) runs the API server or a dispatcher, manages workspaces, keys and agents, and (over
HTTP, dialer/remote.py) imports CSV files and runs batches.

Management commands act on the configured store: the SQLite file in DIALER_DATA_DIR (shared with a
running server), or MongoDB (MONGODB_URI). A private in-memory database (DIALER_DATA_DIR=:memory:)
lives inside the server process: with it use the /api/admin/ endpoints instead (see docs/workspaces.md). `dialer backup PATH` copies the live SQLite file.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Awaitable

import click

from dialer import remote
from dialer.logs import setup_logging
from dialer.runtime import tune_gc
from dialer.ports import StoreOpenFailed, StoreUnavailable
from dialer.services.tenancy import TenancyError, agent_view
from dialer.settings import Settings
from dialer.settings_checks import check_dispatcher

log = logging.getLogger("dialer")


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _settings(ctx: click.Context, dispatches: bool = False) -> Settings:
    """The settings, checked (dialer/settings_checks.py); `dispatches`: this process places calls if its settings
    say so (`serve`) or always (`worker`), and needs what its provider needs."""
    try:
        settings = Settings.load(ctx.obj["config"])
        if dispatches and (ctx.command.name == "worker" or settings.runs_embedded_dispatcher):
            check_dispatcher(settings)
    except ValueError as exc:
        click.echo(f"bad settings: {exc}", err=True)
        raise Exit(2) from None
    setup_logging(settings.log_level)
    tune_gc()
    return settings


@click.group(help=__doc__.splitlines()[0])
@click.option("--config", help="settings file (default config/default.yaml)")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    ctx.obj = {"config": config}


@cli.command(help="run the API server (and, with the embedded store, a dispatcher)")
@click.pass_context
def serve(ctx: click.Context) -> None:
    from aiohttp import web

    from dialer.composition import build_app

    settings = _settings(ctx, dispatches=True)
    try:
        with _listen(settings) as sock:  # first: on a taken port nothing starts (no store opened, no dispatcher)
            web.run_app(build_app(settings), sock=sock,
                        print=lambda _: log.info(f"listening on http://{settings.host}:{settings.port}"))
    except StoreOpenFailed as exc:
        click.echo(f"cannot start: {exc}", err=True)
        raise Exit(2) from None
    except OSError as exc:  # the address is taken (another server), or not ours to listen on
        click.echo(_cannot_listen(settings, exc), err=True)
        raise Exit(1) from None


def _listen(settings: Settings) -> socket.socket:
    """The server's socket, bound and listening (aiohttp binds only after the app's start-up has run)."""
    family, _, _, _, address = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    return socket.create_server(address, family=family, backlog=128)


def _cannot_listen(settings: Settings, exc: OSError) -> str:
    """One line for `serve`'s OSError: asyncio's own ("error while attempting to bind on address ('127.0.0.1',
    8080): address already in use") repeats the address as a Python tuple and names no setting."""
    where = f"cannot listen on {settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the address is already in use (another server?); DIALER_PORT chooses another port"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {settings.host} is not an address of this machine; DIALER_HOST chooses another"
    if exc.errno == errno.EACCES:
        return f"{where}: not allowed (a port below 1024 needs privileges); DIALER_PORT chooses another port"
    return f"{where}: {exc.strerror or exc} (DIALER_HOST / DIALER_PORT choose another)"


@cli.command(help="run a dispatcher process")
@click.pass_context
def worker(ctx: click.Context) -> None:
    from workers.main import run_worker

    settings = _settings(ctx, dispatches=True)
    try:
        raise Exit(asyncio.run(run_worker(settings)))
    except OSError as exc:  # its /metrics port is taken, or not ours to listen on
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        where = f"{settings.host}:{settings.worker_metrics_port}"
        click.echo(f"cannot listen on {where} for /metrics: {exc.strerror}; DIALER_WORKER_METRICS_PORT chooses "
                   "another port (0: none)", err=True)
        raise Exit(1) from None


async def _manage(settings: Settings, command: str, **args) -> int:
    if settings.private:
        click.echo("DIALER_DATA_DIR=:memory: lives inside the server; use /api/admin/ instead", err=True)
        return 2
    from dialer.composition import open_services

    try:
        services = await open_services(settings)
    except StoreOpenFailed as exc:
        click.echo(f"cannot open the store: {exc}", err=True)
        return 2
    try:
        tenancy = services.tenancy
        if command == "workspace-create":
            workspace, key = await tenancy.create_workspace(args["name"])
            out = {"workspaceId": str(workspace["_id"]), "name": workspace["name"], "apiKey": key}
        elif command == "workspace-list":
            out = [{"workspaceId": str(w["_id"]), "name": w["name"]} for w in await tenancy.list_workspaces()]
        elif command == "key-revoke":
            out = {"revoked": await tenancy.revoke_key(args["key"])}
        else:
            workspace = await tenancy.get_workspace(args["workspace_id"])
            if workspace is None:
                click.echo("workspace not found", err=True)
                return 1
            if command == "key-create":
                out = {"workspaceId": args["workspace_id"], "apiKey": await tenancy.create_key(workspace["_id"])}
            else:  # agent-create
                spec = {"name": args["name"], "requiredVariables": list(args["required"]),
                        "callingNumbers": list(args["number"]), "timezones": list(args["timezone"]),
                        "twimlUrl": args["twiml_url"], "streamUrl": args["stream_url"]}
                out = agent_view(await tenancy.create_agent(workspace["_id"], spec))
    except TenancyError as exc:
        click.echo(str(exc), err=True)
        return 1
    finally:
        await services.close()
    click.echo(json.dumps(out, indent=2))
    return 0


def _managed(name: str, **params):
    def run(ctx: click.Context, **args) -> None:
        raise Exit(asyncio.run(_manage(_settings(ctx), name, **args)))

    return click.pass_context(run)


cli.command("workspace-create", help="create a workspace and print its first API key")(
    click.argument("name")(_managed("workspace-create")))
cli.command("workspace-list", help="list workspaces")(_managed("workspace-list"))
cli.command("key-create", help="create another API key for a workspace")(
    click.argument("workspace_id")(_managed("key-create")))
cli.command("key-revoke", help="revoke an API key")(click.argument("key")(_managed("key-revoke")))
_agent = _managed("agent-create")
for option in (click.option("--stream-url"), click.option("--twiml-url"),
               click.option("--timezone", multiple=True, help="default IANA time zone (repeatable)"),
               click.option("--number", multiple=True, help="a calling number it owns (repeatable)"),
               click.option("--required", multiple=True, help="a required variable (repeatable)"),
               click.option("--name", required=True), click.argument("workspace_id")):
    _agent = option(_agent)
cli.command("agent-create", help="create an agent in a workspace")(_agent)


@cli.command(help="copy the live SQLite database to PATH (consistent while the engine runs)")
@click.argument("path")
@click.pass_context
def backup(ctx: click.Context, path: str) -> None:
    raise Exit(_backup(_settings(ctx), path))


def _backup(settings: Settings, target: str) -> int:
    if not settings.embedded or settings.private:
        click.echo("backup copies the SQLite file in DIALER_DATA_DIR (use mongodump for MongoDB)", err=True)
        return 2
    from dialer.store.sqlite.database import backup

    if Path(target).is_dir():  # a folder: the copy goes in it, named by its time
        target = str(Path(target) / f"dialer-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.db")
    live = Path(settings.sqlite_path).resolve()
    if Path(target).resolve() in (live, live.with_name(live.name + "-wal"), live.with_name(live.name + "-shm")):
        # the copy would replace the file the engine is writing: its later writes would go nowhere
        click.echo(f"backup refused: {target} is the live database itself; give another path", err=True)
        return 2
    if not Path(target).parent.is_dir():  # said plainly, before SQLite's "unable to open database file"
        click.echo(f"backup failed: there is no folder {Path(target).parent}", err=True)
        return 1
    # SIGTERM (a cron job's timeout, a service stopped) killed the copy and left its full-size .partial file: it is
    # an exception now, and the copy cleans up after itself as after Ctrl-C.
    main = threading.current_thread() is threading.main_thread()  # (signal handlers are the main thread's)
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    try:
        size = backup(settings.sqlite_path, target)
    except (OSError, StoreOpenFailed, StoreUnavailable) as exc:
        click.echo(f"backup failed: {exc}", err=True)
        return 1
    except Terminated:
        click.echo("backup stopped (SIGTERM): no copy was left", err=True)
        return 128 + signal.SIGTERM
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    click.echo(json.dumps({"source": settings.sqlite_path, "backup": target, "bytes": size}))
    return 0


class Terminated(BaseException):
    """SIGTERM, as an exception (like KeyboardInterrupt for SIGINT), so that what is under way cleans up."""


def _terminated(signum, frame) -> None:
    raise Terminated


def _server(f):
    f = click.option("--key", default=lambda: os.environ.get("DIALER_API_KEY", ""),
                     help="the workspace key (DIALER_API_KEY)")(f)
    return click.option("--url", default=lambda: os.environ.get("DIALER_URL", "http://127.0.0.1:8080"),
                        help="the server (DIALER_URL)")(f)


async def _until_terminated(work: Awaitable[int]) -> int:
    """`work`, cancelled by SIGTERM as asyncio.run cancels on Ctrl-C (raised as Terminated). The plain handler's
    exception, raised wherever the loop happened to be, was kept by whichever task ran then: about one stop in
    fifteen left the command waiting for its server's answer for ever."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        return await work
    except asyncio.CancelledError:
        if stopped:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # (which leaves the default: the plain handler again)
        signal.signal(signal.SIGTERM, _terminated)


def _remote(args: SimpleNamespace) -> None:
    # SIGTERM (a job's timeout, a container stopped) as Ctrl-C: it killed the command without a word before.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    try:
        raise Exit(asyncio.run(_until_terminated(remote.run(args)) if main else remote.run(args)))
    except (KeyboardInterrupt, Terminated) as exc:
        click.echo("\ninterrupted: run the same command again (with --batch) to resume; nothing is written twice",
                   err=True)
        raise Exit(130 if isinstance(exc, KeyboardInterrupt) else 128 + signal.SIGTERM) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


@cli.command("import-csv", help="import a CSV of contacts into a batch over HTTP (resumable)")
@click.argument("file")
@click.option("--batch", help="the batch to add the contacts to")
@click.option("--create", metavar="NAME", help="create a batch of this name first")
@click.option("--calling-number", multiple=True, help="with --create (repeatable)")
@click.option("--agent", help="with --create: the agent's id (else found from the calling numbers)")
@click.option("--limit", type=int, help="with --create: its concurrency limit")
@click.option("--chunk", type=click.IntRange(1, 1000), default=1000, show_default=True, help="rows per request (1-1,000)")
@click.option("--rejects", help="where rejected rows go with their reasons (default FILE.rejected.csv)")
@_server
def import_csv(file, batch, create, calling_number, agent, limit, chunk, rejects, url, key) -> None:
    if bool(batch) == bool(create):
        raise click.UsageError("give --batch ID or --create NAME")
    _remote(SimpleNamespace(command="import-csv", file=file, batch=batch, create=create,
                            calling_number=list(calling_number), agent=agent, limit=limit, chunk=chunk,
                            rejects=rejects, url=url, key=key))


@cli.group(help="the workspace's do-not-call list")
def dnc() -> None:
    pass


@dnc.command("import", help="list every number of a file (a CSV with a phone column, or one number per line) "
                            "over HTTP, with progress; run it again after an interruption to continue")
@click.argument("file")
@click.option("--reason", help="kept with each listing")
@click.option("--chunk", type=click.IntRange(1, 100_000), default=50_000, show_default=True,
              help="numbers per request (1-100,000)")
@click.option("--rejects", help="where impossible numbers go with their reasons (default FILE.rejected.csv)")
@_server
def dnc_import(file, reason, chunk, rejects, url, key) -> None:
    _remote(SimpleNamespace(command="dnc-import", file=file, reason=reason, chunk=chunk, rejects=rejects,
                            url=url, key=key))


@cli.command(help="list, show, start, stop, cancel or retry batches over HTTP")
@click.argument("verb", type=click.Choice(remote.VERBS))
@click.argument("batch_id", required=False)
@click.option("--status", help="list: only these statuses (comma-separated)")
@click.option("--hang-up", is_flag=True, help="cancel: end the calls in flight too")
@_server
def batches(verb, batch_id, status, hang_up, url, key) -> None:
    _remote(SimpleNamespace(command="batches", verb=verb, batch_id=batch_id, status=status, hang_up=hang_up,
                            url=url, key=key))


@cli.command("workspace-set", help="change a workspace's settings over HTTP (with the admin token): credits, the "
                                   "normalizeFields allowlist, the enrollment face's concurrency, the compliance "
                                   "profile and the attempts per number per day")
@click.argument("workspace_id")
@click.option("--credits", type=int, help="set the credit balance (one credit per enrolled contact)")
@click.option("--unlimited-credits", is_flag=True, help="remove the balance: unlimited")
@click.option("--add-credits", type=int, help="add to the balance (negative takes away)")
@click.option("--normalization/--no-normalization", default=None, help="allow normalizeFields for it, or not")
@click.option("--concurrency", type=int, help="concurrency limit of its enrollment batches")
@click.option("--compliance", type=click.Choice(["none", "us-federal", "us-states", "unset"]),
              help="the compliance profile of its batches without their own (unset: none)")
@click.option("--max-attempts-per-day", type=int,
              help="attempts per number per rolling 24 h across its batches (0: no cap)")
@click.option("--url", default=lambda: os.environ.get("DIALER_URL", "http://127.0.0.1:8080"),
              help="the server (DIALER_URL)")
@click.option("--admin-token", default=lambda: os.environ.get("DIALER_ADMIN_TOKEN", ""),
              help="the server's admin token (DIALER_ADMIN_TOKEN)")
def workspace_set(workspace_id, credits, unlimited_credits, add_credits, normalization, concurrency, compliance,
                  max_attempts_per_day, url, admin_token) -> None:
    body: dict = {}
    if credits is not None or unlimited_credits:
        if credits is not None and unlimited_credits:
            raise click.UsageError("give --credits N or --unlimited-credits, not both")
        body["credits"] = credits
    if add_credits is not None:
        body["addCredits"] = add_credits
    if normalization is not None:
        body["normalizationAllowed"] = normalization
    if concurrency is not None:
        body["defaultConcurrencyLimit"] = concurrency
    if compliance is not None:
        body["compliance"] = None if compliance == "unset" else compliance
    if max_attempts_per_day is not None:
        body["maxAttemptsPerNumberPerDay"] = max_attempts_per_day or None
    if not body:
        raise click.UsageError("nothing to change: give --credits, --add-credits, --normalization, --concurrency, "
                               "--compliance or --max-attempts-per-day")
    _remote(SimpleNamespace(command="workspace-set", workspace_id=workspace_id, body=body, url=url, key=admin_token))


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="dialer", standalone_mode=False)
    except Exit as done:
        return done.code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
