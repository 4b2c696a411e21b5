-- no-transaction
-- Operator console (issue 20): releases (voids) done in the last hour and day, as
-- 20261208200002 for refunds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS voids_voided_at ON voids (completed_at)
    WHERE status = 'voided';
