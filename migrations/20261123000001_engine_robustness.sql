-- Engine robustness (issue 9).
--
-- Close attempts are counted apart from refund attempts, so a long PENDING close does not use up
-- the refund's retries once the payment turns out to have succeeded.
ALTER TABLE cancellations ADD COLUMN close_attempts integer NOT NULL DEFAULT 0;

-- A nudge that arrives while a worker holds the row's lease is noted here and honoured when the
-- worker records its outcome (the outcome would otherwise overwrite next_attempt_at).
ALTER TABLE cancellations ADD COLUMN nudged_at timestamptz;

-- The first arrival of a paymentRequestId that could not be decided (the answer was U: a wallet or
-- database fault). Its retries are judged against the cancellable period by this earliest arrival,
-- so a cancel that arrived in time stays in time when Alipay+ retries it after the cut-off.
CREATE TABLE cancel_arrivals (
    payment_request_id  text        PRIMARY KEY,
    first_arrived_at    timestamptz NOT NULL
);
