"""The `dialer` command: run the API server or a dispatcher, manage workspaces, keys and agents, and
(over HTTP, dialer/remote.py) import CSV files and run batches.

Management commands act on the configured MongoDB (MONGODB_URI). The in-memory store lives inside
the server process, so with it use the /api/admin/ endpoints instead (see README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from dialer import remote
from dialer.logs import setup_logging
from dialer.remote import add_commands
from dialer.runtime import tune_gc
from dialer.services.tenancy import TenancyError, agent_view
from dialer.settings import Settings

log = logging.getLogger("dialer")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from dialer.composition import build_app

    web.run_app(build_app(settings), host=settings.host, port=settings.port,
                print=lambda _: log.info(f"listening on http://{settings.host}:{settings.port}"))
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from workers.main import run_worker

    return asyncio.run(run_worker(settings))


async def _manage(settings: Settings, args: argparse.Namespace) -> int:
    if settings.in_memory:
        print("MONGODB_URI is not set: the in-memory store lives inside the server; use /api/admin/ instead",
              file=sys.stderr)
        return 2
    from dialer.composition import open_services

    services = await open_services(settings)
    try:
        tenancy = services.tenancy
        if args.command == "workspace-create":
            workspace, key = await tenancy.create_workspace(args.name)
            out = {"workspaceId": str(workspace["_id"]), "name": workspace["name"], "apiKey": key}
        elif args.command == "workspace-list":
            out = [{"workspaceId": str(w["_id"]), "name": w["name"]} for w in await tenancy.list_workspaces()]
        elif args.command == "key-create":
            workspace = await tenancy.get_workspace(args.workspace_id)
            if workspace is None:
                print("workspace not found", file=sys.stderr)
                return 1
            out = {"workspaceId": args.workspace_id, "apiKey": await tenancy.create_key(workspace["_id"])}
        elif args.command == "key-revoke":
            out = {"revoked": await tenancy.revoke_key(args.key)}
        else:  # agent-create
            workspace = await tenancy.get_workspace(args.workspace_id)
            if workspace is None:
                print("workspace not found", file=sys.stderr)
                return 1
            spec = {"name": args.name, "requiredVariables": args.required, "callingNumbers": args.number,
                    "timezones": args.timezone, "twimlUrl": args.twiml_url, "streamUrl": args.stream_url}
            out = agent_view(await tenancy.create_agent(workspace["_id"], spec))
    except TenancyError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        await services.close()
    print(json.dumps(out, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dialer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="settings file (default config/default.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the API server (and, with the in-memory store, a dispatcher)")
    sub.add_parser("worker", help="run a dispatcher process")
    p = sub.add_parser("workspace-create", help="create a workspace and print its first API key")
    p.add_argument("name")
    sub.add_parser("workspace-list", help="list workspaces")
    p = sub.add_parser("key-create", help="create another API key for a workspace")
    p.add_argument("workspace_id")
    p = sub.add_parser("key-revoke", help="revoke an API key")
    p.add_argument("key")
    p = sub.add_parser("agent-create", help="create an agent in a workspace")
    p.add_argument("workspace_id")
    p.add_argument("--name", required=True)
    p.add_argument("--required", action="append", default=[], help="a required variable (repeatable)")
    p.add_argument("--number", action="append", default=[], help="a calling number it owns (repeatable)")
    p.add_argument("--timezone", action="append", default=[], help="default IANA time zone (repeatable)")
    p.add_argument("--twiml-url")
    p.add_argument("--stream-url")
    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load(args.config)
    except ValueError as exc:
        print(f"bad settings: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    tune_gc()
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "worker":
        return _worker(settings, args)
    if args.command in ("import-csv", "batches"):
        try:
            return asyncio.run(remote.run(args))
        except KeyboardInterrupt:
            print("\ninterrupted: run the same command again (with --batch) to resume; nothing is written twice",
                  file=sys.stderr)
            return 130
    return asyncio.run(_manage(settings, args))


if __name__ == "__main__":
    sys.exit(main())
