"""Twilio webhooks: signed status callbacks that move calls along, and the TwiML that connects an
answered call to its agent. Outside /api/: Twilio speaks form posts and XML, not our envelope.

Every request must carry a valid X-Twilio-Signature for DIALER_PUBLIC_BASE_URL + path and query;
a forged or unsigned one gets 403 and changes nothing.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web
from twilio.request_validator import RequestValidator

from dialer.api.appkeys import EVENTS, SETTINGS, STORE
from dialer.services.tenancy import parse_id

log = logging.getLogger("dialer.webhooks")


async def _verified_form(request: web.Request) -> dict[str, str]:
    settings = request.app[SETTINGS]
    form = await request.post()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    signature = request.headers.get("X-Twilio-Signature", "")
    url = settings.public_base_url.rstrip("/") + request.path_qs
    token = settings.twilio_auth_token
    if not token or not signature or not RequestValidator(token).validate(url, params, signature):
        log.warning("rejected an unsigned or forged Twilio webhook", extra={"path": request.path})
        raise web.HTTPForbidden(text="invalid Twilio signature")
    return params


async def twilio_status(request: web.Request) -> web.Response:
    params = await _verified_form(request)
    call_id = request.query.get("callId")
    duration = params.get("CallDuration")
    result = await request.app[EVENTS].apply(
        call_id, params.get("CallSid"), params.get("CallStatus", ""), batch_id=request.query.get("batchId"),
        attempt=request.query.get("attempt"),
        answered_by=params.get("AnsweredBy"), duration=int(duration) if duration and duration.isdigit() else None,
        error=params.get("ErrorMessage"))
    log.info("twilio status", extra={"callId": call_id, "status": params.get("CallStatus"), "result": result})
    return web.Response(status=204)


def _twiml(body: str) -> web.Response:
    return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
                        content_type="application/xml")


async def twilio_twiml(request: web.Request) -> web.Response:
    """What an answered call does: connect to the agent's media stream, or hand over to its TwiML URL.

    The agent's contract: a media stream receives callId, batchId, phoneNumber and every variable of
    the record as <Parameter>s (Twilio's customParameters; non-string values JSON-encoded); a TwiML URL
    is fetched with the same names as query parameters."""
    await _verified_form(request)
    store = request.app[STORE]
    call = await store.calls.find_one({"_id": parse_id(request.query.get("callId"))})
    if call is None:
        return _twiml("<Hangup/>")
    batch = await store.batches.find_one({"_id": call["batchId"]}, {"agentId": 1})
    agent = await store.agents.find_one({"_id": batch["agentId"]}) if batch else None
    values = {"callId": str(call["_id"]), "batchId": str(call["batchId"]), "phoneNumber": call["phoneNumber"]}
    for name, value in call.get("variables", {}).items():
        values[name] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if agent and agent.get("streamUrl"):
        params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in values.items())
        return _twiml(f"<Connect><Stream url={quoteattr(agent['streamUrl'])}>{params}</Stream></Connect>")
    if agent and agent.get("twimlUrl"):
        sep = "&" if "?" in agent["twimlUrl"] else "?"
        return _twiml(f"<Redirect method=\"POST\">{escape(agent['twimlUrl'] + sep + urlencode(values))}</Redirect>")
    return _twiml("<Say>This agent has no destination configured.</Say><Hangup/>")
