-- Money that moved is recorded as moved, and never taken back (issue 18).
--
-- What the wallet said it refunded: set with status 'succeeded', whatever the amount (a refund of
-- another amount than owed is still money that moved: the row goes to manual review, the refund
-- stays 'succeeded'). NULL on a 'succeeded' refund written before this column existed: those were
-- only ever marked succeeded for the full amount (amount_value).
ALTER TABLE refunds ADD COLUMN refunded_value bigint;
ALTER TABLE refunds ADD COLUMN refunded_currency text;
-- NOT VALID, then VALIDATE: the check never holds a lock that blocks writes while it scans.
ALTER TABLE refunds ADD CONSTRAINT refunds_refunded_value_check
    CHECK (refunded_value > 0) NOT VALID;
ALTER TABLE refunds ADD CONSTRAINT refunds_refunded_currency_check
    CHECK (refunded_currency ~ '^[A-Z]{3}$') NOT VALID;
ALTER TABLE refunds VALIDATE CONSTRAINT refunds_refunded_value_check;
ALTER TABLE refunds VALIDATE CONSTRAINT refunds_refunded_currency_check;

-- Refunds stored as 'failed' because the wallet reported another amount moved (before this
-- migration): they are money that moved. Only manual_review rows can hold them, so this touches a
-- handful of rows; the amount is the one the engine wrote into last_error.
UPDATE refunds r
   SET status = 'succeeded',
       refunded_value = (regexp_match(c.last_error, '^the wallet refunded (\d{1,18}) ([A-Z]{3}),'))[1]::bigint,
       refunded_currency = (regexp_match(c.last_error, '^the wallet refunded (\d{1,18}) ([A-Z]{3}),'))[2]
  FROM cancellations c
 WHERE c.payment_request_id = r.payment_request_id
   AND c.state = 'manual_review' AND r.status = 'failed'
   AND c.last_error ~ '^the wallet refunded \d{1,18} [A-Z]{3}, the cancellation owes ';

-- A refund the wallet confirmed is final: its status, the amounts and the payment it was for
-- never change again, and the row is never deleted (as a void's 'voided' or 'captured'). Fires
-- only on rows already succeeded (the WHEN clause), so the engine's hot path does not pay for it.
CREATE FUNCTION refund_success_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the refund of % succeeded; it cannot be deleted', OLD.payment_request_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status <> 'succeeded'
       OR NEW.refunded_value IS DISTINCT FROM OLD.refunded_value
       OR NEW.refunded_currency IS DISTINCT FROM OLD.refunded_currency
       OR NEW.amount_value <> OLD.amount_value OR NEW.currency <> OLD.currency
       OR NEW.payment_id <> OLD.payment_id OR NEW.refund_id <> OLD.refund_id THEN
        RAISE EXCEPTION 'the refund of % succeeded; it cannot become % (or change what moved)',
            NEW.payment_request_id, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER refunds_success_is_final BEFORE UPDATE OR DELETE ON refunds
    FOR EACH ROW WHEN (OLD.status = 'succeeded') EXECUTE FUNCTION refund_success_is_final();
