-- pgbench: the database work of ONE replayed cancelPayment: the lookup of the stored answer
-- (src/store/cancellations.rs, Store::stored_answer), a hit. scripts/bench runs it with
-- -M prepared and -D answered=N, the number of cancellations 'pgr-1' .. 'pgr-N' it created.
\set r random(1, :answered)
SELECT acquirer_id, psp_id, result_code, state, response_body
  FROM cancellations WHERE payment_request_id = 'pgr-' || :r;
