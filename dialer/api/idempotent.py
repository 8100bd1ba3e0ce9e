"""Idempotency-Key on a route, in one line: `@idempotent(owner)` above its `@documented(...)`.

    @idempotent(per_workspace)                       # or per_admin, or a face's own owner and Answers
    @route("Create a batch", body=CreateBatchBody, responses={...})
    async def create_batch(request): ...

A request without the header runs as before. With it: who asks (`owner`: the workspace of the key,
or "admin") -> the key checked (printable ASCII, at most 255 characters) -> the body read and
fingerprinted -> the use case run once through Idempotency.once (dialer/services/idempotency.py: the
rules, what is kept, expiry) -> the answer, or for a retry the first answer byte for byte with
`Idempotent-Replay: true`. Refusals come in the route's own shapes (`Answers`: the envelope here, the
ElevenLabs face's 422 `{"detail": [...]}` there): a malformed key 400, a key still in use 409, a key used
for another route, target or body 422 (so is a key whose stored answer does not open: AnswerUnreadable).
The route's document gains the header, the replay header on every answer that can be replayed, and those
refusals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Awaitable, Callable, Mapping

from aiohttp import web

from dialer.api import replies as r
from dialer.api.appkeys import IDEMPOTENCY
from dialer.api.auth import require_admin, require_workspace
from dialer.api.documented import ROUTE_DOC, Reply, RouteDoc, route_doc
from dialer.api.envelope import fail
from dialer.api.requests import IdempotencyHeaders
from dialer.services.errors import Refused
from dialer.services.idempotency import (Claim, Idempotency, KeyInUse, KeyUsedElsewhere, StoredResponse,
                                         fingerprint_of, keeps)

HEADER = "Idempotency-Key"
CLAIM = web.RequestKey("idempotency_claim", Claim)  # set while a handler runs under a key
Owner = Callable[[web.Request], Awaitable[str]]


@dataclass(frozen=True)
class Answers:
    """How a family of routes refuses: `render` a refusal in its shape; `replies` the refusals of a key
    (400 malformed, 409 in use, 422 used for another request) as its document shows them."""

    render: Callable[[Refused], web.Response]
    replies: Mapping[int, Reply]


ENVELOPE = Answers(fail, {
    400: Reply(r.ErrorEnvelope, "the Idempotency-Key is not 1-255 printable ASCII characters"),
    409: Reply(r.ErrorEnvelope, "a request with this Idempotency-Key is still running: retry later"),
    422: Reply(r.ErrorEnvelope, "the Idempotency-Key was used for another request (another route, target or "
                                "body), or its stored answer cannot be read: use a new key")})


async def per_workspace(request: web.Request) -> str:
    """Keys of the workspace whose API key is presented."""
    return str((await require_workspace(request)).workspace_id)


async def per_admin(request: web.Request) -> str:
    """Keys of the admin token's routes, apart from every workspace's."""
    require_admin(request)
    return "admin"


def idempotent(owner: Owner, answers: Answers = ENVELOPE) -> Callable:
    """The handler run once per Idempotency-Key of `owner` (see the module docstring)."""

    def wrap(handler: Callable) -> Callable:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            key = request.headers.get(HEADER)
            if key is None:
                return await handler(request)
            try:
                return await _once(request, handler, owner, key, answers)
            except Refused as exc:
                return answers.render(exc)

        setattr(wrapped, ROUTE_DOC, _documented(route_doc(handler), answers))
        return wrapped

    return wrap


async def _once(request: web.Request, handler: Callable, owner: Owner, key: str, answers: Answers) -> web.Response:
    who = await owner(request)  # who asks first: a stranger learns nothing of the keys
    problem = Idempotency.check_key(key)
    if problem:
        raise Refused(400, "Bad Request", problem, data={"header": HEADER})

    async def work(claim: Claim) -> StoredResponse:
        request[CLAIM] = claim  # the ids the handler's writes may take (Claim.object_id)
        try:
            response = await handler(request)
        except Refused as exc:
            response = answers.render(exc)
        headers = {name: value for name, value in response.headers.items() if name != "Content-Length"}
        return StoredResponse(response.status, (response.body or b"").decode(), headers)

    scope = f"{request.method} {request.path_qs}"
    try:
        answer = await request.app[IDEMPOTENCY].once(who, key, scope, await fingerprint_of(await request.read()), work)
    except KeyInUse:
        raise Refused(409, "Conflict", "a request with this Idempotency-Key is still being processed",
                      data={"header": HEADER}) from None
    except KeyUsedElsewhere as exc:
        raise Refused(422, "Unprocessable Entity", f"this Idempotency-Key was already used for {exc}: use a new key",
                      data={"header": HEADER}) from None
    response = web.Response(status=answer.code, body=answer.text.encode(), headers=answer.headers)
    if answer.replayed:
        response.headers["Idempotent-Replay"] = "true"
    return response


def _documented(doc: RouteDoc, answers: Answers) -> RouteDoc:
    """The route's document with the header, the refusals of a key (beside the route's own answers with
    those codes) and the replay header on every answer that is kept."""
    responses = dict(doc.responses)
    for code, reply in answers.replies.items():
        own = responses.get(code)
        responses[code] = reply if own is None else replace(own, description=f"{own.description}; or {reply.description}")
    responses = {code: replace(reply, headers={**reply.headers, **r.REPLAY_HEADER}) if keeps(code) else reply
                 for code, reply in responses.items()}
    return replace(doc, headers=IdempotencyHeaders, responses=responses)
