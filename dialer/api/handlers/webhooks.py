"""Twilio webhooks: signed status callbacks that move calls along, and the TwiML that connects an
answered call to its agent. Outside /api/: Twilio speaks form posts and XML, not our envelope.

Every request must carry a valid X-Twilio-Signature for DIALER_PUBLIC_BASE_URL + path and query;
a forged or unsigned one gets 403 and changes nothing.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web
from twilio.request_validator import RequestValidator

from dialer.api.appkeys import EVENTS, REPOS, SETTINGS
from dialer.api.documented import TWILIO_SIGNATURE, Reply, documented
from dialer.api.requests import TwilioForm, TwilioQuery
from dialer.services.calls import destination

log = logging.getLogger("dialer.webhooks")


MAX_CALLBACK_BYTES = 64 * 1024  # Twilio's callbacks are a few hundred bytes
FORGED = Reply(None, "unsigned, forged, or not a readable form: nothing changes", media_type="text/plain")


def twilio_route(summary: str, responses: dict, **more):
    """Twilio's routes: a signed form in (documented by TwilioForm, read after the signature), not our envelope."""
    return documented(summary, tags=("Twilio webhooks",), security=(TWILIO_SIGNATURE,), body=TwilioForm,
                      body_media_type="application/x-www-form-urlencoded", query=TwilioQuery,
                      responses={**responses, 403: FORGED}, **more)


def _refuse(request: web.Request, why: str) -> web.HTTPForbidden:
    log.warning("rejected a Twilio webhook", extra={"path": request.path, "reason": why})
    return web.HTTPForbidden(text=f"invalid Twilio callback: {why}")


async def _verified_form(request: web.Request) -> dict[str, str]:
    """The callback's parameters, once its signature is checked. The signature is read before the body
    is trusted: an unsigned request is refused unread, and a body that is not a readable urlencoded
    form (Twilio's only format) is refused too, never an error of ours."""
    settings = request.app[SETTINGS]
    signature = request.headers.get("X-Twilio-Signature", "")
    token = settings.twilio_auth_token
    if not token or not signature:
        raise _refuse(request, "unsigned")
    if request.content_type != "application/x-www-form-urlencoded":
        raise _refuse(request, "not a form")
    raw = await request.content.read(MAX_CALLBACK_BYTES + 1)
    if len(raw) > MAX_CALLBACK_BYTES:
        raise _refuse(request, "too large")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise _refuse(request, "unreadable body") from None
    params = dict(pairs)
    url = settings.public_base_url.rstrip("/") + request.path_qs
    if not RequestValidator(token).validate(url, params, signature):
        raise _refuse(request, "signature does not match")
    return params


@twilio_route("A call's status callback (initiated, ringing, answered, completed)",
              responses={204: Reply(None, "applied, or ignored if it belongs to an earlier attempt")})
async def twilio_status(request: web.Request) -> web.Response:
    params = await _verified_form(request)
    call_id = request.query.get("callId")
    duration = params.get("CallDuration", "")
    result = await request.app[EVENTS].apply(
        call_id, params.get("CallSid"), params.get("CallStatus", ""), batch_id=request.query.get("batchId"),
        attempt=request.query.get("attempt"),
        answered_by=params.get("AnsweredBy"), duration=_seconds(duration),
        error=params.get("ErrorMessage"))
    log.info("twilio status", extra={"callId": call_id, "status": params.get("CallStatus"), "result": result})
    return web.Response(status=204)


def _seconds(value: str) -> int | None:
    """CallDuration: whole seconds in ASCII digits (a call lasts 24 h at most); anything else is left out."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else None


def _twiml(body: str) -> web.Response:
    return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
                        content_type="application/xml")


@twilio_route("What an answered call does (TwiML)", responses={
    200: Reply(None, "connect to the agent's media stream, or redirect to its TwiML URL", media_type="application/xml")})
async def twilio_twiml(request: web.Request) -> web.Response:
    """What an answered call does: connect to the agent's media stream, or hand over to its TwiML URL.

    The agent's contract: a media stream receives callId, batchId, phoneNumber and every variable of
    the record as <Parameter>s (Twilio's customParameters; non-string values JSON-encoded), plus, for a
    call submitted through the ElevenLabs face, recipientId and clientData (JSON); a TwiML URL is
    fetched with the same names as query parameters."""
    await _verified_form(request)
    repos = request.app[REPOS]
    found = await destination(repos.calls, repos.batches, repos.tenancy, request.query.get("callId"))
    if found is None:
        return _twiml("<Hangup/>")
    call, agent = found
    values = {name: value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
              for name, value in call.get("variables", {}).items()}
    meta = call.get("meta") or {}
    if meta.get("recipientId"):
        values["recipientId"] = meta["recipientId"]
    if meta.get("clientData"):  # the rest of an ElevenLabs recipient's conversation_initiation_client_data
        values["clientData"] = json.dumps(meta["clientData"], ensure_ascii=False)
    # Ours last: a variable cannot pass itself off as the call's id.
    values.update(callId=str(call["_id"]), batchId=str(call["batchId"]), phoneNumber=call["phoneNumber"])
    if agent and agent.get("streamUrl"):
        params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in values.items())
        return _twiml(f"<Connect><Stream url={quoteattr(agent['streamUrl'])}>{params}</Stream></Connect>")
    if agent and agent.get("twimlUrl"):
        sep = "&" if "?" in agent["twimlUrl"] else "?"
        return _twiml(f"<Redirect method=\"POST\">{escape(agent['twimlUrl'] + sep + urlencode(values))}</Redirect>")
    return _twiml("<Say>This agent has no destination configured.</Say><Hangup/>")
