"""Settings from file and environment, the admin endpoints, agents, createBatch validation, the CLI."""

from __future__ import annotations

import datetime as dt

import pytest

from dialer.cli import main as cli_main
from dialer.settings import Settings


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("port: 9000\nstrict_numbers: true\n")
    settings = Settings.load(path, env={"DIALER_PORT": "9100", "DIALER_CPS": "2.5", "MONGODB_URI": ""})
    assert settings.port == 9100 and settings.strict_numbers is True and settings.calls_per_second == 2.5
    assert settings.backend == "sqlite" and settings.embedded and settings.runs_embedded_dispatcher


def test_bad_settings_are_refused_with_the_name(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("nonsense: 1\n")
    with pytest.raises(ValueError, match="nonsense"):
        Settings.load(path, env={})
    with pytest.raises(ValueError, match="DIALER_PORT must be a whole number, not 'eighty'"):
        Settings.load(env={"DIALER_PORT": "eighty"})


def test_redacted_settings_hide_secrets():
    settings = Settings.load(env={"TWILIO_AUTH_TOKEN": "tok-123", "DIALER_ADMIN_TOKEN": "adm"})
    shown = str(settings.redacted())
    assert "tok-123" not in shown and "adm'" not in shown


def test_cli_management_needs_a_shared_store(capsys, monkeypatch):
    monkeypatch.setenv("DIALER_DATA_DIR", ":memory:")
    assert cli_main(["--config", "/dev/null", "workspace-list"]) == 2
    assert "admin" in capsys.readouterr().err


def test_cli_management_works_on_the_sqlite_file(capsys, monkeypatch, tmp_path):
    """The embedded store is a file: the CLI opens it as the server does (and may while one runs)."""
    import json

    monkeypatch.setenv("DIALER_DATA_DIR", str(tmp_path))
    assert cli_main(["--config", "/dev/null", "workspace-create", "acme"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["apiKey"]
    assert cli_main(["--config", "/dev/null", "workspace-list"]) == 0
    assert [w["name"] for w in json.loads(capsys.readouterr().out)] == ["acme"]


async def test_admin_endpoints_create_a_working_workspace(client):
    headers = {"Authorization": "Bearer admin-secret"}
    resp = await client.post("/api/admin/workspaces", json={"name": "Acme Ünïcode"}, headers=headers)
    doc = await resp.json()
    assert resp.status == 200 and doc["data"]["apiKey"].startswith("dk_")
    key, ws = doc["data"]["apiKey"], doc["data"]["workspaceId"]
    resp = await client.post(f"/api/admin/workspaces/{ws}/agents", headers=headers, json={
        "name": "sales", "requiredVariables": ["account_id"], "callingNumbers": ["+1 (415) 555-0199"],
        "timezones": ["America/Los_Angeles"], "streamUrl": "wss://agent.example/stream"})
    agent = (await resp.json())["data"]
    assert resp.status == 200 and agent["callingNumbers"] == ["+14155550199"]
    resp = await client.get("/api/agents", headers={"x-api-key": key})
    assert [a["agentId"] for a in (await resp.json())["data"]["agents"]] == [agent["agentId"]]
    resp = await client.post(f"/api/admin/workspaces/{ws}/keys", headers=headers)
    second = (await resp.json())["data"]["apiKey"]
    resp = await client.get("/api/agents", headers={"Authorization": f"Bearer {second}"})
    assert resp.status == 200
    # A calling number belongs to one agent only.
    resp = await client.post(f"/api/admin/workspaces/{ws}/agents", headers=headers,
                             json={"name": "copy", "callingNumbers": ["+14155550199"]})
    assert resp.status == 400


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_admin_needs_the_token(client, headers):
    resp = await client.post("/api/admin/workspaces", json={"name": "x"}, headers=headers)
    assert resp.status == 403 and (await resp.json())["code"] == 403


async def test_admin_is_disabled_without_a_token(aiohttp_client, settings, clock):
    from dialer.composition import build_app

    client = await aiohttp_client(build_app(settings.replace(admin_token=""), clock))
    resp = await client.post("/api/admin/workspaces", json={"name": "x"}, headers={"Authorization": "Bearer "})
    assert resp.status == 403 and "disabled" in (await resp.json())["errorMessage"]


@pytest.mark.parametrize("body, reason", [
    ({}, "name is required"),
    ({"name": "x", "concurrencyLimit": 0}, "concurrencyLimit"),
    ({"name": "x", "concurrencyLimit": "5"}, "concurrencyLimit"),
    ({"name": "x", "callingWindow": {"start": "25:00"}}, "callingWindow"),
    ({"name": "x", "callingWindow": {"days": ["funday"]}}, "callingWindow"),
    ({"name": "x", "timezone": "Nowhere/City"}, "timezone"),
    ({"name": "x", "scheduledAt": "tomorrow"}, "scheduledAt"),
    ({"name": "x", "scheduledAt": "2026-12-01T09:00:00"}, "offset"),
    ({"name": "x", "scheduledAt": "9999-12-31T23:59:59-01:00"}, "between"),
    ({"name": "x", "scheduledAt": "0001-01-01T00:00:00+01:00"}, "between"),
    ({"name": "x", "retry": {"maxAttempts": 0}}, "maxAttempts"),
    ({"name": "x", "retry": {"on": ["sad"]}}, "retry.on"),
    ({"name": "x", "ringingTimeoutSeconds": 1}, "ringingTimeoutSeconds"),
    ({"name": "x", "surprise": 1}, "unknown fields"),
    ({"name": "x", "callingNumbers": ["12"]}, "callingNumbers"),
    ({"name": "Zoë \u0000"}, "control characters"),
    ({"name": "bell\u0007"}, "control characters"),
    ({"name": "trailing newline\n"}, "control characters"),
    ({"name": "x" * 201}, "1 to 200 characters"),
])
async def test_create_batch_validation(api, body, reason):
    body = {"agentId": str(api.agent["_id"]), **body}
    code, doc = await api.post("/api/call/createBatch", body)
    assert code == 400 and reason in doc["errorMessage"]


async def test_create_batch_resolves_the_agent_from_calling_numbers(api):
    number = api.agent["callingNumbers"][0]
    code, doc = await api.post("/api/call/createBatch", {"name": "n", "callingNumbers": [number[2:]]})
    assert code == 200 and doc["data"]["agentId"] == str(api.agent["_id"])
    code, doc = await api.post("/api/call/createBatch", {"name": "n", "callingNumbers": ["+14155550000"]})
    assert code == 404 and "no agent" in doc["errorMessage"]
    code, doc = await api.post("/api/call/createBatch", {"name": "n", "agentId": "64e5f12345abcdef98765432"})
    assert code == 404


async def test_create_batch_needs_a_calling_number(api):
    agent = await api.tenancy.create_agent(api.workspace_id, {"name": "mute", "callingNumbers": []})
    code, doc = await api.post("/api/call/createBatch", {"name": "n", "agentId": str(agent["_id"])})
    assert code == 400 and "calling number" in doc["errorMessage"]


def test_a_separate_worker_needs_a_shared_store(capsys, monkeypatch):
    monkeypatch.setenv("DIALER_DATA_DIR", ":memory:")
    assert cli_main(["--config", "/dev/null", "worker"]) == 2
    assert "shared store" in capsys.readouterr().err  # a JSON log line on stderr


async def test_a_batch_name_may_be_any_printable_unicode(api):
    code, doc = await api.post("/api/call/createBatch", {"agentId": str(api.agent["_id"]), "name": "Zoë 🎉 «été»"})
    assert code == 200
    assert (await api.get(f"/api/call/batches/{doc['data']['batchId']}"))[1]["data"]["name"] == "Zoë 🎉 «été»"


@pytest.mark.parametrize("path, body, reason", [
    ("/api/admin/workspaces", {"name": "ok", "foo": 1}, "unknown fields"),
    ("/api/admin/workspaces", {"name": "tab\tname"}, "control characters"),
    ("/agents", {"name": "dollar", "requiredVariables": ["$x"]}, "may not start with '$'"),
    ("/agents", {"name": "dot", "requiredVariables": ["a.b"]}, "contain '.'"),
    ("/agents", {"name": "x", "colour": "red"}, "unknown fields"),
    ("/agents", {"name": "\u0000"}, "control characters"),
])
async def test_admin_refuses_what_it_used_to_keep_or_drop(client, path, body, reason):
    """An agent requiring a variable no record may carry refused every record of its batches; unknown fields were
    dropped without a word, and control characters kept in names."""
    headers = {"Authorization": "Bearer admin-secret"}
    if path == "/agents":
        resp = await client.post("/api/admin/workspaces", json={"name": "acme"}, headers=headers)
        path = f"/api/admin/workspaces/{(await resp.json())['data']['workspaceId']}/agents"
    resp = await client.post(path, json=body, headers=headers)
    doc = await resp.json()
    assert resp.status == 400 and reason in doc["errorMessage"], doc


@pytest.mark.parametrize("delays", ["0,inf", "0,nan", "0,1e400", "0,-5", "abc", "", "0,31536000"])
def test_webhook_retry_delays_that_could_never_be_scheduled_are_refused(delays):
    # inf and nan read as floats: each attempt then failed to be recorded, its message sent again for ever.
    with pytest.raises(ValueError, match="DIALER_WEBHOOK_RETRY_DELAYS"):
        Settings.load(env={"DIALER_WEBHOOK_RETRY_DELAYS": delays})  # refused as the settings are read
    assert Settings.load(env={"DIALER_WEBHOOK_RETRY_DELAYS": "0, 5,2592000"}).webhook_delays == (0, 5, 2592000)


@pytest.mark.parametrize("days", ["0", "-1", "inf", "nan", "1e400", "36501"])
def test_a_webhook_retention_that_is_not_a_positive_number_of_days_is_refused_at_start(days, tmp_path):
    """DIALER_WEBHOOK_RETENTION_DAYS: how long delivered and failed messages are kept (the reaper purges them
    after it). Zero or less would purge what was just sent; inf or nan no cutoff could be computed from."""
    from dialer.composition import services_over
    from dialer.core.clock import SystemClock

    with pytest.raises(ValueError, match="DIALER_WEBHOOK_RETENTION_DAYS"):
        settings = Settings.load(env={"DIALER_WEBHOOK_RETENTION_DAYS": days})
        services_over(None, settings, SystemClock())  # type: ignore[arg-type]  (refused before any store is read)
    assert Settings.load(env={}).webhook_retention == dt.timedelta(days=30)
    with pytest.raises(ValueError, match="DIALER_WEBHOOK_RETENTION_DAYS must be a number"):
        Settings.load(env={"DIALER_WEBHOOK_RETENTION_DAYS": "a month"})
    assert Settings.load(env={"DIALER_WEBHOOK_RETENTION_DAYS": "7.5"}).webhook_retention == dt.timedelta(days=7.5)


async def test_admin_revokes_a_workspace_key_and_only_its_own(client):
    """A key could be revoked only by the CLI on the store's file: with the embedded store in memory (or without
    shell access to the file) a leaked key could not be revoked at all, nor a rotation finished."""
    headers = {"Authorization": "Bearer admin-secret"}
    made = [(await (await client.post("/api/admin/workspaces", json={"name": n}, headers=headers)).json())["data"]
            for n in ("alpha", "beta")]
    (a, a_key), (b, _) = [(m["workspaceId"], m["apiKey"]) for m in made]
    resp = await client.post(f"/api/admin/workspaces/{a}/keys", headers=headers)
    a_new = (await resp.json())["data"]["apiKey"]
    revoke = "/api/admin/workspaces/{}/keys/revoke"
    resp = await client.post(revoke.format(b), json={"apiKey": a_key}, headers=headers)
    assert resp.status == 404  # another workspace's key is not touched
    assert (await client.get("/api/agents", headers={"x-api-key": a_key})).status == 200
    resp = await client.post(revoke.format(a), json={"apiKey": a_key}, headers={"x-api-key": a_new})
    assert resp.status == 403  # a workspace key is not the admin token
    resp = await client.post(revoke.format(a), json={"apiKey": a_key}, headers=headers)
    doc = await resp.json()
    assert resp.status == 200 and doc["data"] == {"workspaceId": a, "revoked": True, "hint": a_key[:6] + "…"}
    assert a_key not in await resp.text()
    assert (await client.get("/api/agents", headers={"x-api-key": a_key})).status == 403
    assert (await client.get("/v1/convai/batch-calling/workspace", headers={"xi-api-key": a_key})).status == 401
    assert (await client.get("/api/agents", headers={"x-api-key": a_new})).status == 200
    resp = await client.post(revoke.format(a), json={"apiKey": a_key}, headers=headers)
    assert resp.status == 404  # already revoked
    resp = await client.post(revoke.format(a), json={"key": a_key}, headers=headers)
    assert resp.status == 400


def test_a_settings_file_named_but_missing_stops_the_start(capsys, monkeypatch):
    """A mistyped --config or DIALER_CONFIG used to start on the defaults (the simulator, not Twilio) without a word."""
    monkeypatch.setenv("DIALER_DATA_DIR", ":memory:")
    assert cli_main(["--config", "/etc/dialer/prodution.yaml", "serve"]) == 2
    err = capsys.readouterr().err
    assert "/etc/dialer/prodution.yaml does not exist" in err and "Traceback" not in err
    monkeypatch.setenv("DIALER_CONFIG", "/etc/dialer/prodution.yaml")
    assert cli_main(["worker"]) == 2
    assert "does not exist" in capsys.readouterr().err
