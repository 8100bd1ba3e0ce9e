"""Schemathesis hooks for tests/test_schemathesis.py (loaded by the schemathesis process): Twilio's
webhooks are signed as Twilio signs them, so that fuzzing reaches past the signature check.

The test configures the TwilioSignature scheme with the value PLACEHOLDER; just before a request is
sent, a placeholder is replaced by the real signature of that request (DIALER_ST_PUBLIC_BASE + path and
query, and the form), with the token the live server has (DIALER_ST_TWILIO_TOKEN). A request whose
signature schemathesis removed or spoilt on purpose (its auth checks) stays unsigned, and must be refused.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl

import requests
import schemathesis
from twilio.request_validator import RequestValidator

PLACEHOLDER = "sign-me"
HEADER = "X-Twilio-Signature"


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    name = next((key for key in headers if key.lower() == HEADER.lower()), None)
    if name is None or headers[name] != PLACEHOLDER:
        return
    url = requests.Request("POST", os.environ["DIALER_ST_PUBLIC_BASE"] + case.formatted_path,
                           params=case.query or None).prepare().url
    # The form as it goes on the wire (requests' own encoding), read back as the server reads it.
    encoded = requests.Request("POST", url, data=case.body if isinstance(case.body, dict) else None).prepare().body
    params = dict(parse_qsl(encoded or "", keep_blank_values=True))
    headers[name] = RequestValidator(os.environ["DIALER_ST_TWILIO_TOKEN"]).compute_signature(url, params)
    case.headers = headers
