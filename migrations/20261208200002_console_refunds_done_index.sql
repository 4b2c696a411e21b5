-- no-transaction
-- Operator console (issue 20): refunds done in the last hour and day, counted from an index
-- of the succeeded ones by completion time rather than a scan of every refund ever made.
-- CONCURRENTLY, as 20261208200001.
CREATE INDEX CONCURRENTLY IF NOT EXISTS refunds_succeeded_at ON refunds (completed_at)
    WHERE status = 'succeeded';
