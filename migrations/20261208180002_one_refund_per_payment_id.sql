-- no-transaction
-- One paymentId is refunded at most once, whatever paymentRequestIds map to it (issue 18). Built
-- CONCURRENTLY (outside a transaction, hence the directive above), so a live table keeps taking
-- writes while it is built. If existing rows already break the rule the build fails and names the
-- paymentId: resolve those by hand (`mpp-cancel show`), drop the invalid index, migrate again.
CREATE UNIQUE INDEX CONCURRENTLY refunds_one_per_payment_id ON refunds (payment_id);
