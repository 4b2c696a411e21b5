-- One row per paymentRequestId ever cancelled (or refused): the idempotency record, the stored
-- answer and, while money work remains, the refund engine's job. Rows are never deleted: the
-- same id must get the same answer forever.
CREATE TABLE cancellations (
    payment_request_id  text        PRIMARY KEY,
    acquirer_id         text        NOT NULL,
    psp_id              text        NOT NULL,
    state               text        NOT NULL CHECK (state IN (
                            'refund_pending', 'awaiting_outcome', 'nothing_to_refund',
                            'refunded', 'rejected', 'manual_review')),
    result_code         text        NOT NULL,
    result_status       text        NOT NULL CHECK (result_status IN ('S', 'F')),
    -- The exact response body sent the first time, replayed byte for byte.
    response_body       bytea       NOT NULL,
    -- The payment as the wallet reported it when the cancellation was decided (NULL: unknown).
    payment_id          text,
    payment_status      text,
    amount_value        bigint      CHECK (amount_value > 0),
    currency            text,
    payment_created_at  timestamptz,
    -- T: the settlement day (cancel.timezone) of the payment, or of the request when unknown.
    settlement_date     date        NOT NULL,
    requested_at        timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- The refund engine's bookkeeping: due while next_attempt_at is set.
    attempts            integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz,
    lease_expires_at    timestamptz,
    -- Who holds the lease: an outcome is only recorded by the claim that still holds it.
    lease_token         uuid,
    last_error          text,
    -- Money work is due exactly in the states that have it.
    CONSTRAINT due_only_with_work CHECK (
        (next_attempt_at IS NOT NULL) = (state IN ('refund_pending', 'awaiting_outcome')))
);

-- The engine's queue: only rows with work are indexed.
CREATE INDEX cancellations_due ON cancellations (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX cancellations_settlement_date ON cancellations (settlement_date);
CREATE INDEX cancellations_state ON cancellations (state)
    WHERE state IN ('manual_review', 'refund_pending', 'awaiting_outcome');

-- The refund a cancellation owes: at most one per cancellation, enforced by the primary key on
-- payment_request_id. refund_id is what the wallet dedupes on, the same on every attempt.
CREATE TABLE refunds (
    payment_request_id  text        PRIMARY KEY REFERENCES cancellations (payment_request_id),
    refund_id           uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    payment_id          text        NOT NULL,
    amount_value        bigint      NOT NULL CHECK (amount_value > 0),
    currency            text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status              text        NOT NULL DEFAULT 'queued'
                            CHECK (status IN ('queued', 'pending', 'succeeded', 'failed')),
    wallet_reference    text,
    created_at          timestamptz NOT NULL,
    completed_at        timestamptz
);

-- Every transition and every wallet call, append-only.
CREATE TABLE audit_events (
    id                  bigserial   PRIMARY KEY,
    payment_request_id  text        NOT NULL,
    occurred_at         timestamptz NOT NULL,
    event               text        NOT NULL,
    from_state          text,
    to_state            text,
    detail              jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_payment_request_id ON audit_events (payment_request_id, id);

-- The demo wallet (wallet.kind = "demo"): a stand-in ledger for trying the service locally.
-- A real deployment uses the HTTP wallet adapter or its own Wallet implementation and leaves
-- these tables empty.
CREATE TABLE demo_payments (
    payment_request_id  text        PRIMARY KEY,
    payment_id          text        NOT NULL UNIQUE,
    status              text        NOT NULL CHECK (status IN ('SUCCESS', 'FAILED', 'PROCESSING')),
    amount_value        bigint      NOT NULL CHECK (amount_value > 0),
    currency            text        NOT NULL,
    refunded_value      bigint      NOT NULL DEFAULT 0 CHECK (refunded_value >= 0),
    created_at          timestamptz NOT NULL
);

CREATE TABLE demo_refunds (
    refund_id           uuid        PRIMARY KEY,
    payment_request_id  text        NOT NULL REFERENCES demo_payments (payment_request_id),
    amount_value        bigint      NOT NULL,
    currency            text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
