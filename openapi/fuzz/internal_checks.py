"""schemathesis checks for openapi/internal.yaml (loaded by scripts/fuzz-api via SCHEMATHESIS_HOOKS).

`cursor` of listCancellations is opaque: any string is valid by the schema, yet only a
`nextCursor` this API returned is a cursor, so any other is refused 400 (documented). No schema
can say which strings are cursors, so schemathesis' `positive_data_acceptance` is off for that one
operation (openapi/fuzz/internal.toml) and this check holds it to the same rule with that single
exception: a schema-valid request is accepted, unless its only fault is a foreign cursor.
"""

import json

import schemathesis

# src/http/internal.rs's refusal of a cursor it did not make.
FOREIGN_CURSOR = "cursor is not a nextCursor this API returned"
LIST = "GET /v1/cancellations"


@schemathesis.check
def only_a_foreign_cursor_refuses_a_valid_listing(ctx, response, case):
    meta = case.meta
    if case.operation.label != LIST or meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code < 400 or response.status_code in (401, 403, 404, 409, 429):
        return None
    if response.status_code >= 500:
        return None  # not_a_server_error reports these
    cursor = (case.query or {}).get("cursor")
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        error = None
    if response.status_code == 400 and cursor not in (None, "") and error == FOREIGN_CURSOR:
        return None
    raise AssertionError(
        f"a schema-valid listing was refused {response.status_code} ({error!r}); only a cursor "
        f"this API did not make may be (cursor={cursor!r})")
