-- no-transaction
-- Operator console (issue 20): find a cancellation by the wallet's paymentId. Built
-- CONCURRENTLY (hence outside a transaction, one statement per file), so a live table keeps
-- taking writes while it is built. A build interrupted midway leaves an INVALID index behind:
-- drop it (DROP INDEX CONCURRENTLY cancellations_payment_id) and migrate again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS cancellations_payment_id ON cancellations (payment_id)
    WHERE payment_id IS NOT NULL;
