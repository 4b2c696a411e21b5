-- Listing a state (GET /v1/cancellations?state=...) page by page: one index range scan per page,
-- keyset over (requested_at, payment_request_id). Both columns never change once a row exists,
-- so paging is stable and the engine's claims (which only touch attempts, the lease and
-- updated_at) stay HOT updates. It also serves every `state = ...` lookup the partial index
-- below served, so that one goes: one index less to maintain on each state change.
CREATE INDEX cancellations_by_state ON cancellations (state, requested_at, payment_request_id);
DROP INDEX cancellations_state;
