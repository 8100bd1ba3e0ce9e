"""A fake Twilio REST API on 127.0.0.1: the slice of /2010-04-01 Calls the dialer uses, for tests that
drive the real twilio SDK (TwilioProvider(api_base=fake.base_url)), and signed status callbacks.

    async with FakeTwilio() as fake:                       # or: fake = FakeTwilio(); await fake.start()
        provider = TwilioProvider(fake.account_sid, fake.auth_token, api_base=fake.base_url)
        ...                                                 # fake.calls, fake.requests
        await fake.send_status(sid, "in-progress", answered_by="human")

Answers are shaped like Twilio's (JSON bodies, error JSON {"code", "message", "more_info", "status"},
RFC 2822 dates, list pages {"calls": [...], "next_page_uri": ...}). Error codes for malformed creates
are approximations. Like Twilio, a call's start_time is empty until it leaves "queued".
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

API = "/2010-04-01/Accounts/{account}"
VALID_EVENTS = {"initiated", "ringing", "answered", "completed"}
FINAL = {"completed", "busy", "no-answer", "failed", "canceled"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str | list[str]]  # form body (POST) or query (GET); a repeated key gives a list
    user: str | None  # the basic-auth username, if any
    authorized: bool

    def getall(self, key: str) -> list[str]:
        value = self.params.get(key, [])
        return value if isinstance(value, list) else [value]


@dataclass
class RecordedCallback:
    url: str
    params: dict[str, str]
    signature: str | None
    status: int  # what our server answered


@dataclass
class _Fault:
    status: int = 0
    code: int = 0
    message: str = ""
    delay: float = 0.0
    times: int = 1


class FakeTwilio:
    def __init__(self, account_sid: str | None = None, auth_token: str | None = None,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.account_sid = account_sid or "AC" + uuid.uuid4().hex
        self.auth_token = auth_token or secrets.token_hex(16)
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, dict[str, Any]] = {}
        self.callbacks: list[RecordedCallback] = []
        self.number_errors: dict[str, tuple[int, int, str]] = {}  # To -> (status, code, message), every time
        self.on_create: Callable[[dict[str, Any]], None] | None = None  # told of each call a create made
        self._fails: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._drops: list[_Fault] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        self._closing.clear()
        app = web.Application(middlewares=[self._record_and_authenticate])
        calls, call = API + "/Calls.json", API + "/Calls/{sid}.json"
        app.router.add_post(calls, self._create)
        app.router.add_get(calls, self._list)
        app.router.add_get(call, self._fetch)
        app.router.add_post(call, self._update)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        self._closing.set()  # wakes delayed answers
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()
        self._session = self._runner = None

    async def __aenter__(self) -> FakeTwilio:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- fault injection and state ----------------------------------------------------------------

    def fail_next(self, status: int, code: int, message: str, times: int = 1) -> None:
        """The next `times` creates answer this Twilio error and create nothing."""
        self._fails.append(_Fault(status=status, code=code, message=message, times=times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next `times` creates answer after `seconds`; the call is created at once, as Twilio would."""
        self._delays.append(_Fault(delay=seconds, times=times))

    def drop_next(self, times: int = 1) -> None:
        """The next `times` creates are accepted (the call is created) but the connection drops unanswered."""
        self._drops.append(_Fault(times=times))

    def fail_number(self, to: str, status: int = 400, code: int = 21211, message: str | None = None) -> None:
        """Every create to `to` answers this error (default: 21211, invalid 'To')."""
        self.number_errors[to] = (status, code, message or f"The 'To' number {to} is not a valid phone number.")

    def add_call(self, to: str, from_: str, status: str = "queued", created: dt.datetime | None = None,
                 **params: Any) -> str:
        """A call Twilio knows of without our create (e.g. one an earlier process placed)."""
        sid, created = "CA" + uuid.uuid4().hex, created or self.now()
        self.calls[sid] = {"To": to, "From": from_, **params, "sid": sid, "status": "queued",
                           "date_created": created, "date_updated": created,
                           "start_time": None, "end_time": None, "duration": None, "answered_by": None}
        if status != "queued":
            self.set_status(sid, status)
        return sid

    def set_status(self, sid: str, status: str, *, answered_by: str | None = None, duration: int | None = None) -> None:
        """Move the fake call to `status` (Twilio vocabulary) without sending a callback."""
        call, now = self.calls[sid], self.now()
        call.update(status=status, date_updated=now)
        if status != "queued" and call["start_time"] is None:
            call["start_time"] = now
        if answered_by is not None:
            call["answered_by"] = answered_by
        if status in FINAL:
            call["end_time"] = call["end_time"] or now
            call["duration"] = duration if duration is not None else call["duration"] or 0
        elif duration is not None:
            call["duration"] = duration

    def creates(self) -> list[RecordedRequest]:
        """The recorded create requests, in order."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Calls.json")]

    # -- status callbacks -------------------------------------------------------------------------

    async def send_status(self, sid: str, status: str, *, answered_by: str | None = None, duration: int | None = None,
                          validator_url: str | None = None, url: str | None = None, signature: str | None = None,
                          signed: bool = True, extra: dict[str, str] | None = None) -> int:
        """POST a status callback for call `sid` to its StatusCallback (or `url`), form-encoded and signed
        like Twilio's over the URL as recorded (or `validator_url`); `signature` replaces the computed
        one, `signed=False` leaves the header out. Sets the fake call's status. Returns the HTTP status."""
        assert self._session is not None, "start() first"
        self.set_status(sid, status, answered_by=answered_by, duration=duration)
        call = self.calls[sid]
        target = url or call.get("StatusCallback")
        assert target, f"call {sid} has no StatusCallback"
        params = {"CallSid": sid, "AccountSid": self.account_sid, "To": call["To"], "From": call["From"],
                  "CallStatus": status, "Direction": "outbound-api", "ApiVersion": "2010-04-01",
                  "CallbackSource": "call-progress-events", "Timestamp": _rfc2822(self.now())}
        if answered_by is not None:
            params["AnsweredBy"] = answered_by
        if duration is not None:
            params["CallDuration"] = str(duration)
        params.update(extra or {})
        if signed and signature is None:
            signature = RequestValidator(self.auth_token).compute_signature(validator_url or target, params)
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signed:
            headers["X-Twilio-Signature"] = signature
        async with self._session.post(target, data=params, headers=headers, allow_redirects=False) as resp:
            await resp.read()
            self.callbacks.append(RecordedCallback(target, params, headers.get("X-Twilio-Signature"), resp.status))
            return resp.status

    async def send_unsigned(self, sid: str, status: str, **kw: Any) -> int:
        return await self.send_status(sid, status, signed=False, **kw)

    async def send_forged(self, sid: str, status: str, **kw: Any) -> int:
        """Signed with a wrong auth token: a well-formed signature that must not validate."""
        target = kw.get("validator_url") or kw.get("url") or self.calls[sid].get("StatusCallback")
        forged = RequestValidator("not-" + self.auth_token).compute_signature(target, {"CallSid": sid})
        return await self.send_status(sid, status, signature=forged, **kw)

    # -- the API ----------------------------------------------------------------------------------

    @web.middleware
    async def _record_and_authenticate(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        form = await request.post() if request.method == "POST" else request.query
        params = {k: (v if len(v := form.getall(k)) > 1 else v[0]) for k in dict.fromkeys(form.keys())}
        user, password = _basic_auth(request.headers.get("Authorization", ""))
        ok = user == self.account_sid and password == self.auth_token
        self.requests.append(RecordedRequest(request.method, request.path, params, user, ok))
        if not ok:
            return _error(401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match_info.get("account") != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return await handler(request)

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        delay = self._take(self._delays).delay if self._delays else 0.0
        refusal = self._refusal(form)
        call = None if refusal else self._new_call(form)  # created before a late answer, as Twilio would
        if call is not None and self.on_create is not None:
            self.on_create(call)
        if delay:
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
            except TimeoutError:
                pass
        if self._drops and call is not None:
            self._take(self._drops)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        if refusal:
            return _error(*refusal)
        return web.json_response(self._call_json(call), status=201)

    def _new_call(self, form: Any) -> dict[str, Any]:
        params = {k: form.getone(k) for k in dict.fromkeys(form.keys())}
        params["StatusCallbackEvent"] = form.getall("StatusCallbackEvent", [])
        return self.calls[self.add_call(params.pop("To"), params.pop("From"), **params)]

    def _refusal(self, form: Any) -> tuple[int, int, str] | None:
        if self._fails:
            fault = self._take(self._fails)
            return fault.status, fault.code, fault.message
        to = form.get("To")
        if not to:
            return 400, 21201, "No 'To' number is specified"
        if to in self.number_errors:
            return self.number_errors[to]
        if not form.get("From"):
            return 400, 21213, "No 'From' number is specified"
        if not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
            return 400, 21205, "Url parameter is required"
        if bad := set(form.getall("StatusCallbackEvent", [])) - VALID_EVENTS:
            return 400, 21626, f"Invalid StatusCallbackEvent(s): {', '.join(sorted(bad))}"
        return None

    def _take(self, faults: list[_Fault]) -> _Fault:
        fault = faults[0]
        fault.times -= 1
        if fault.times <= 0:
            faults.pop(0)
        return fault

    async def _fetch(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(self._call_json(call))

    async def _update(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        status = (await request.post()).get("Status")
        if status in ("completed", "canceled") and call["status"] not in FINAL:
            self.set_status(call["sid"], status)
        return web.json_response(self._call_json(call))

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        calls = [c for c in self.calls.values()
                 if (not q.get("To") or c["To"] == q["To"]) and (not q.get("From") or c["From"] == q["From"])
                 and (not q.get("Status") or c["status"] == q["Status"])]
        for key, keep in (("StartTime>", lambda t, b: t >= b), ("StartTime<", lambda t, b: t <= b)):
            if q.get(key):
                bound = _parse_time(q[key])
                calls = [c for c in calls if c["start_time"] is not None and keep(c["start_time"], bound)]
        calls.sort(key=lambda c: c["date_created"], reverse=True)
        size, page = int(q.get("PageSize", 50)), int(q.get("Page", 0))
        chunk = calls[page * size:(page + 1) * size]
        uri = API.format(account=self.account_sid) + "/Calls.json"
        more = (page + 1) * size < len(calls)
        filters = "".join("&" + urlencode({k: v}) for k, v in q.items() if k not in ("Page", "PageSize", "PageToken"))
        return web.json_response({
            "calls": [self._call_json(c) for c in chunk], "page": page, "page_size": size, "start": page * size,
            "end": page * size + max(len(chunk) - 1, 0), "uri": f"{uri}?Page={page}&PageSize={size}{filters}",
            "first_page_uri": f"{uri}?Page=0&PageSize={size}{filters}", "previous_page_uri": None,
            "next_page_uri": f"{uri}?Page={page + 1}&PageSize={size}&PageToken=PA{page + 1}{filters}" if more else None,
        })

    def _call_json(self, call: dict[str, Any]) -> dict[str, Any]:
        uri = API.format(account=self.account_sid) + f"/Calls/{call['sid']}"
        return {
            "sid": call["sid"], "account_sid": self.account_sid, "api_version": "2010-04-01",
            "to": call["To"], "to_formatted": call["To"], "from": call["From"], "from_formatted": call["From"],
            "status": call["status"], "direction": "outbound-api", "answered_by": call["answered_by"],
            "duration": None if call["duration"] is None else str(call["duration"]),
            "date_created": _rfc2822(call["date_created"]), "date_updated": _rfc2822(call["date_updated"]),
            "start_time": _rfc2822(call["start_time"]), "end_time": _rfc2822(call["end_time"]),
            "parent_call_sid": None, "phone_number_sid": None, "price": None, "price_unit": "USD",
            "forwarded_from": None, "caller_name": None, "group_sid": None, "queue_time": "0", "trunk_sid": None,
            "uri": uri + ".json", "subresource_uris": {"notifications": uri + "/Notifications.json",
                                                       "recordings": uri + "/Recordings.json"},
        }


def _error(status: int, code: int, message: str, headers: dict | None = None) -> web.Response:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    return web.json_response(body, status=status, headers=headers)


def _basic_auth(header: str) -> tuple[str | None, str | None]:
    if not header.startswith("Basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password
    except ValueError:
        return None, None


def _rfc2822(when: dt.datetime | None) -> str | None:
    return format_datetime(when.astimezone(dt.timezone.utc)) if when else None


def _parse_time(text: str) -> dt.datetime:
    """The SDK sends "YYYY-MM-DDTHH:MM:SSZ"; Twilio documents "YYYY-MM-DD" (midnight UTC)."""
    if len(text) == 10:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
