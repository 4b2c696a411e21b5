-- pgbench: the database work of ONE fresh cancelPayment for a SUCCESS payment, statement for
-- statement as the service does it (src/cancel.rs, src/store/cancellations.rs, src/wallet/demo.rs):
--   1. the replay lookup (a miss: the id was never cancelled),
--   2. the demo wallet's payment lookup (a hit),
--   3. one statement (one transaction): the idempotency record, the queued refund, the audit
--      event, as Store::record writes them.
-- scripts/bench runs it with -M prepared (the service's statements are prepared too) and
-- -D payments=N, the number of demo payments 'pay-1' .. 'pay-N' it created. The cancellation id
-- is random over 2^63, so inserts never conflict. The refund engine's later work on the row is
-- not part of this script (nor of the limit): see scripts/bench.
\set c random(1, 9000000000000000000)
\set p random(1, :payments)
SELECT acquirer_id, psp_id, result_code, state, response_body
  FROM cancellations WHERE payment_request_id = 'pgb-' || :c;
SELECT payment_request_id, payment_id, status, amount_value, currency, refunded_value, created_at
  FROM demo_payments WHERE payment_request_id = 'pay-' || :p;
WITH decided AS (
  INSERT INTO cancellations
    (payment_request_id, acquirer_id, psp_id, state, result_code, result_status,
     response_body, payment_id, payment_status, amount_value, currency,
     payment_created_at, settlement_date, requested_at, updated_at, next_attempt_at)
  VALUES ('pgb-' || :c, '1022188000000000001', '1022172000000000001', 'refund_pending', 'SUCCESS', 'S',
     '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"Success"}}'::bytea,
     'demo-pay-' || :p, 'SUCCESS', 1500, 'JPY',
     now(), current_date, now(), now(), now())
  ON CONFLICT (payment_request_id) DO NOTHING
  RETURNING payment_request_id),
refund AS (
  INSERT INTO refunds (payment_request_id, payment_id, amount_value, currency, created_at)
  SELECT payment_request_id, 'demo-pay-' || :p, 1500, 'JPY', now() FROM decided),
audit AS (
  INSERT INTO audit_events (payment_request_id, occurred_at, event, to_state, detail)
  SELECT payment_request_id, now(), 'cancel_decided', 'refund_pending',
         '{"resultCode":"SUCCESS","paymentStatus":"SUCCESS","refund":"1500 JPY"}'::text::jsonb
    FROM decided)
SELECT count(*) FROM decided;
