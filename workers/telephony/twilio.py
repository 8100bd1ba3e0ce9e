"""Twilio behind the TelephonyProvider interface, through the official SDK's asyncio client.

Every SDK request runs under our own `asyncio.timeout`: twilio 9.13's AsyncTwilioHttpClient does not
apply a usable timeout (twilio-python issue #925). Failures become ProviderError:

- no answer within the timeout: UNKNOWN when creating a call (Twilio may have created it; reconcile
  with find_calls before dialling again), TRANSIENT otherwise;
- HTTP 429 / code 20429: RATE_LIMITED; 5xx: TRANSIENT; a code of INVALID_NUMBER_CODES: INVALID_NUMBER;
  the account refused (HTTP 401, codes of ACCOUNT_CODES: a rotated auth token, a suspended account):
  TRANSIENT, the fault of no call, which waits until Twilio takes the account again; any other error
  answer: REJECTED;
- no connection made: TRANSIENT; the connection lost once the create request may have gone out: UNKNOWN.

Messages carry the HTTP status, the Twilio code and Twilio's text, never the auth token.
`api_base` (e.g. "http://127.0.0.1:8123") sends all API traffic to another server (tests/fake_twilio.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any, Awaitable, Callable

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from workers.telephony.base import CallEvent, DialRequest, ErrorKind, Placed, ProviderError

# The only values Twilio accepts for StatusCallbackEvent ("answered" reports CallStatus=in-progress).
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
# The number itself is wrong or cannot take a voice call: no retry can succeed.
INVALID_NUMBER_CODES = frozenset({
    21211,  # invalid 'To' phone number
    21214,  # 'To' phone number cannot be reached
    21217,  # phone number does not appear to be valid
    21401,  # invalid phone number
    21407,  # this phone number type does not support voice
    13223,  # Dial: invalid phone number format
    13224,  # Dial: invalid phone number
    13226,  # Dial: invalid country code
})
RATE_LIMITED_CODE = 20429
# The account, not the call: every create is refused alike until an operator fixes it.
ACCOUNT_CODES = frozenset({
    20003,  # authenticate (a wrong or rotated auth token)
    20005,  # account not active (suspended or closed)
})
# A hangup of a call that has already ended is not an error.
CALL_NOT_IN_PROGRESS_CODE = 21220
# Twilio stamps date_created to the second, and its clock is not ours.
FIND_CLOCK_SLACK = dt.timedelta(seconds=5)
FIND_LIMIT = 20


class TwilioProvider:
    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, timeout: float = 10.0, api_base: str | None = None) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._timeout = timeout
        self._api_base = api_base.rstrip("/") if api_base else None
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    def __repr__(self) -> str:
        return f"<TwilioProvider {self._account_sid}>"

    def _calls(self) -> Any:
        """The SDK's CallList, built on first use: aiohttp's ClientSession wants a running event loop."""
        if self._client is None:
            # No max_retries: the SDK's retrying client would re-send a create that may have succeeded.
            self._http = AsyncTwilioHttpClient()
            client = Client(self._account_sid, self._auth_token, http_client=self._http)
            if self._api_base:
                client.edge = client.region = None  # TWILIO_EDGE / TWILIO_REGION would rewrite the host
                client.api.base_url = self._api_base  # the Domain of api.twilio.com, next-page links included
            self._client = client
        return self._client.calls

    async def place_call(self, request: DialRequest) -> Placed:
        params: dict[str, Any] = {"to": request.to, "from_": request.from_, "timeout": request.ringing_timeout}
        if request.twiml_url:
            params["url"] = request.twiml_url
        if request.status_callback_url:
            params.update(status_callback=request.status_callback_url, status_callback_method="POST",
                          status_callback_event=list(STATUS_CALLBACK_EVENTS))
        if request.send_digits:
            params["send_digits"] = request.send_digits
        if request.machine_detection:
            params["machine_detection"] = "Enable"
        call = await self._run("create call", lambda: self._calls().create_async(**params), creating=True)
        return Placed(provider_call_id=call.sid)

    async def call_status(self, provider_call_id: str) -> CallEvent | None:
        call = await self._run("fetch call", lambda: self._calls()(provider_call_id).fetch_async())
        if call is None:
            return None
        return CallEvent(provider_call_id=call.sid, status=str(call.status), answered_by=call.answered_by or None,
                         duration=_int_or_none(call.duration), at=call.date_updated)

    async def find_calls(self, to: str, from_: str, since: dt.datetime) -> list[str]:
        # No StartTime> filter: Twilio filters StartTime by date only, and a call still queued has no
        # start_time yet, which is just the call a timed-out create may have left behind.
        calls = await self._run("list calls", lambda: self._calls().list_async(to=to, from_=from_, limit=FIND_LIMIT))
        floor = (since if since.tzinfo else since.replace(tzinfo=dt.timezone.utc)) - FIND_CLOCK_SLACK
        recent = [c for c in calls or () if isinstance(c.date_created, dt.datetime) and c.date_created >= floor]
        # Newest first; a stable sort keeps Twilio's own order (newest first) among calls created in one second.
        return [c.sid for c in sorted(recent, key=lambda c: c.date_created, reverse=True)]

    async def hangup(self, provider_call_id: str) -> None:
        await self._run("hang up call", lambda: self._calls()(provider_call_id).update_async(status="completed"),
                        absent_codes={CALL_NOT_IN_PROGRESS_CODE})

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def _run(self, op: str, request: Callable[[], Awaitable[Any]], *, creating: bool = False,
                   absent_codes: frozenset[int] | set[int] = frozenset()) -> Any:
        """Run one SDK request under our timeout. Outside a create, 404 (and `absent_codes`) give None."""
        maybe_sent = ErrorKind.UNKNOWN if creating else ErrorKind.TRANSIENT
        try:
            async with asyncio.timeout(self._timeout):
                return await request()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:  # nothing was sent
            raise self._error(ErrorKind.TRANSIENT, f"{op}: cannot connect to Twilio: {exc}") from exc
        except TimeoutError as exc:  # ours, or aiohttp's read timeout
            raise self._error(maybe_sent, f"{op}: no answer from Twilio within {self._timeout:g}s") from exc
        except TwilioException as exc:
            status, code, text = _error_answer(exc)
            if not creating and (status == 404 or code in absent_codes):
                return None
            raise self._error(classify(status, code), f"{op}: HTTP {status}, code {code}: {text}") from exc
        except (aiohttp.ClientError, OSError) as exc:  # the connection failed after it was made
            raise self._error(maybe_sent, f"{op}: connection to Twilio failed: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # a success answer that is not Twilio's JSON (a proxy's page?)
            raise self._error(maybe_sent, f"{op}: unreadable answer from Twilio: {exc}") from exc

    def _error(self, kind: ErrorKind, message: str) -> ProviderError:
        if self._auth_token:
            message = message.replace(self._auth_token, "[auth token]")
        return ProviderError(kind, message)


def classify(status: int, code: int | None) -> ErrorKind:
    """The ErrorKind of a Twilio error answer (HTTP status, Twilio error code)."""
    if status == 429 or code == RATE_LIMITED_CODE:
        return ErrorKind.RATE_LIMITED
    if status >= 500 or status == 401 or code in ACCOUNT_CODES:
        return ErrorKind.TRANSIENT
    if code in INVALID_NUMBER_CODES:
        return ErrorKind.INVALID_NUMBER
    return ErrorKind.REJECTED


def _error_answer(exc: TwilioException) -> tuple[int, int | None, str]:
    """(HTTP status, Twilio code, text) of an error answer. A failed list page is a bare
    TwilioException("Unable to fetch page", response), not a TwilioRestException."""
    if isinstance(exc, TwilioRestException):
        return exc.status, exc.code, exc.msg
    if isinstance(exc, TwilioServiceException):
        return exc.status, exc.code, f"{exc.title}: {exc.detail or ''}"
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", 0)
    try:
        body = json.loads(response.text)
        return status, body.get("code"), f"{exc.args[0]}: {body.get('message', '')}"
    except Exception:
        return status, None, str(exc.args[0] if exc.args else exc)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
