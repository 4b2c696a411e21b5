"""schemathesis checks for openapi/cancel-payment.yaml: Alipay+'s rule in place of HTTP statuses.

Alipay+ treats a non-200 or unsigned answer as unknown and retries it, so the endpoint answers
every request HTTP 200 with a signed `result`; whether a request was refused is `resultStatus`,
not the HTTP status. schemathesis' own `negative_data_rejection` (4xx for invalid input) and
`unsupported_method` (405) cannot hold here; this check takes their place, judging each answer
from the request actually sent (its method, media type and bytes), not from the generator's
intent:
- another method: F/METHOD_NOT_SUPPORTED;
- another media type: F/MEDIA_TYPE_NOT_ACCEPTABLE;
- a body the document's request schema refuses (or not one JSON object, or a repeated key):
  F/PARAM_ILLEGAL;
- a body it accepts: never PARAM_ILLEGAL (a valid request is decided: S, F for a business reason,
  or U for a temporary fault), except for an id already cancelled under other acquirerId/pspId
  (src/cancel.rs: a replay must repeat the original request).
Loaded by scripts/fuzz-api through SCHEMATHESIS_HOOKS for the cancel-payment run only.
"""

import json
import os
import pathlib

import jsonschema_rs
import schemathesis
import yaml

DOCUMENT = pathlib.Path(os.environ.get(
    "CANCEL_PAYMENT_DOCUMENT",
    pathlib.Path(__file__).resolve().parent.parent / "cancel-payment.yaml",
))
_doc = yaml.safe_load(DOCUMENT.read_text())
_operation = _doc["paths"]["/aps/api/v1/payments/cancelPayment"]["post"]
_request_schema = dict(_operation["requestBody"]["content"]["application/json"]["schema"])
_request_schema["components"] = _doc["components"]  # so "#/components/..." resolves
_validator = jsonschema_rs.Draft202012Validator(_request_schema)


# src/cancel.rs's resultMessage for a replay whose acquirerId or pspId differs from the original.
ID_MISMATCH = "acquirerId or pspId differs from the original request"


class _RepeatedKey(ValueError):
    pass


def _no_repeated_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise _RepeatedKey(f"repeated key in {keys}")
    return dict(pairs)


def _body_problem(raw):
    """Why the document (or strict JSON) refuses this body, or None when it is a valid request."""
    if raw is None:
        return "no body"
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_repeated_keys,
                           parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (UnicodeDecodeError, ValueError) as e:
        return f"not strict JSON: {e}"
    if not isinstance(value, dict):
        return "not a JSON object"
    error = next(iter(_validator.iter_errors(value)), None)
    return None if error is None else error.message


@schemathesis.check
def alipayplus_result_fits_the_request(ctx, response, case):
    request = response.request
    result = json.loads(response.content)["result"]
    code, status = result["resultCode"], result["resultStatus"]
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if request.method.upper() != "POST":
        expected, why = "METHOD_NOT_SUPPORTED", f"{request.method} is not POST"
    elif content_type != "application/json":
        expected, why = "MEDIA_TYPE_NOT_ACCEPTABLE", f"media type {content_type!r}"
    else:
        problem = _body_problem(request.body)
        if problem is None:
            # The one PARAM_ILLEGAL a well-formed body can earn: a paymentRequestId already
            # cancelled under other acquirerId/pspId (a replay must repeat the original request).
            if code == "PARAM_ILLEGAL" and not result["resultMessage"].startswith(ID_MISMATCH):
                raise AssertionError(
                    f"a body the document accepts was refused PARAM_ILLEGAL: {result}")
            return None
        expected, why = "PARAM_ILLEGAL", problem
    if (code, status) != (expected, "F"):
        raise AssertionError(f"expected F/{expected} ({why}), got {status}/{code}: {result}")
    return None
