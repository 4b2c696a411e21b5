-- Authorization release (issue 10): a cancel for an AUTHORIZED payment (a card authorization,
-- funds held and not captured) releases the hold through the wallet's `void` instead of
-- refunding money that never moved.

ALTER TABLE cancellations DROP CONSTRAINT cancellations_state_check;
ALTER TABLE cancellations ADD CONSTRAINT cancellations_state_check CHECK (state IN (
    'refund_pending', 'awaiting_outcome', 'void_pending', 'nothing_to_refund',
    'refunded', 'voided', 'rejected', 'manual_review'));

ALTER TABLE cancellations DROP CONSTRAINT due_only_with_work;
ALTER TABLE cancellations ADD CONSTRAINT due_only_with_work CHECK (
    (next_attempt_at IS NOT NULL) = (state IN ('refund_pending', 'awaiting_outcome', 'void_pending')));

-- The release a cancellation owes: at most one per cancellation (primary key), as refunds.
-- void_id is what the wallet dedupes on, the same on every attempt. Status `captured`: the wallet
-- answered that the hold had become a charge, and the cancellation's refund replaced the void.
CREATE TABLE voids (
    payment_request_id  text        PRIMARY KEY REFERENCES cancellations (payment_request_id),
    void_id             uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    payment_id          text        NOT NULL,
    amount_value        bigint      NOT NULL CHECK (amount_value > 0),
    currency            text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status              text        NOT NULL DEFAULT 'queued'
                            CHECK (status IN ('queued', 'pending', 'voided', 'failed', 'captured')),
    wallet_reference    text,
    created_at          timestamptz NOT NULL,
    completed_at        timestamptz
);

-- Never both a released hold and a refund for one payment: a refund may exist beside a void only
-- once the wallet said the hold was captured, and a void's final word (voided, captured) is never
-- taken back. Checked after each statement, holding the cancellation's row lock, so two writers
-- of the two tables are serialized and each sees the other's committed row.
CREATE FUNCTION one_reversal_per_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'voids' AND TG_OP = 'UPDATE'
       AND OLD.status IN ('voided', 'captured') AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'the void of % is already %; it cannot become %',
            NEW.payment_request_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM 1 FROM cancellations WHERE payment_request_id = NEW.payment_request_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM voids v JOIN refunds r USING (payment_request_id)
                WHERE v.payment_request_id = NEW.payment_request_id
                  AND v.status <> 'captured') THEN
        RAISE EXCEPTION 'cancellation % would have both a void and a refund', NEW.payment_request_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

-- Only these writes can break the rule: a new void or refund, or a void's status changing. The
-- engine's refund status updates (the hot path) do not fire it.
CREATE TRIGGER voids_exclude_refunds AFTER INSERT OR UPDATE OF status ON voids
    FOR EACH ROW EXECUTE FUNCTION one_reversal_per_payment();
CREATE TRIGGER refunds_exclude_voids AFTER INSERT ON refunds
    FOR EACH ROW EXECUTE FUNCTION one_reversal_per_payment();

-- The demo wallet learns authorizations: AUTHORIZED (held), VOIDED (released) and the voids it
-- performed, deduplicated on void_id.
ALTER TABLE demo_payments DROP CONSTRAINT demo_payments_status_check;
ALTER TABLE demo_payments ADD CONSTRAINT demo_payments_status_check
    CHECK (status IN ('SUCCESS', 'AUTHORIZED', 'VOIDED', 'FAILED', 'PROCESSING'));

CREATE TABLE demo_voids (
    void_id             uuid        PRIMARY KEY,
    payment_request_id  text        NOT NULL REFERENCES demo_payments (payment_request_id),
    created_at          timestamptz NOT NULL DEFAULT now()
);
