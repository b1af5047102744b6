-- Outbox retention: delete ACCEPTED jobs older than :retention_days days, with their attempts,
-- result events (and those events' finished webhook deliveries) and dependency rows. Run with psql, in batches, after archiving (see
-- docs/operations.md "Backups and retention"):
--
--   psql "$ETIMS_DATABASE_URL_PSQL" -v retention_days=400 -v batch_size=5000 \
--        -f deploy/postgres/retention.sql
--
-- Kept on purpose:
--   * every job that is not accepted (pending, in flight, retrying, dead, blocked, skipped);
--   * an accepted original that a newer or non-accepted credit note still points at
--     (original_job_id: the credit note's orgInvcNo is read from it at first send);
--   * a job with a webhook delivery still pending (its receiver has not had the event yet);
--   * audit_log rows (the operators' record) and the branches' counters.
-- Deleting a job frees its idempotency key: a producer that re-sends that key afterwards
-- creates a NEW job. Choose retention_days far beyond any producer's retry/spool horizon.
-- Ordering by id DESC puts a credit note (always newer) in the same batch as its original.
\set ON_ERROR_STOP on

BEGIN;

-- Old accepted jobs whose webhook deliveries are all finished ...
CREATE TEMPORARY TABLE eligible_jobs ON COMMIT DROP AS
SELECT j.id
FROM jobs AS j
WHERE j.state = 'accepted'
  AND j.accepted_at < extract(epoch FROM now()) - (:retention_days)::float8 * 86400
  AND NOT EXISTS (
      SELECT 1
      FROM result_events AS e
      JOIN webhook_deliveries AS d ON d.event_id = e.id
      WHERE e.job_id = j.id AND d.state = 'pending'
  );

-- ... that no job outside that set points at (a credit note's original_job_id), one batch.
CREATE TEMPORARY TABLE expired_jobs ON COMMIT DROP AS
SELECT x.id
FROM eligible_jobs AS x
WHERE NOT EXISTS (
    SELECT 1
    FROM jobs AS c
    WHERE c.original_job_id = x.id
      AND c.id NOT IN (SELECT id FROM eligible_jobs)
)
ORDER BY x.id DESC
LIMIT :batch_size;

-- Safety net for the batch cut: keep an original whose credit note is not in this batch.
DELETE FROM expired_jobs AS x
WHERE EXISTS (
    SELECT 1
    FROM jobs AS c
    WHERE c.original_job_id = x.id
      AND c.id NOT IN (SELECT id FROM expired_jobs)
);

DELETE FROM job_dependencies
WHERE job_id IN (SELECT id FROM expired_jobs)
   OR depends_on_id IN (SELECT id FROM expired_jobs);
DELETE FROM webhook_deliveries
WHERE event_id IN (SELECT e.id FROM result_events AS e WHERE e.job_id IN (SELECT id FROM expired_jobs));
DELETE FROM attempts WHERE job_id IN (SELECT id FROM expired_jobs);
DELETE FROM result_events WHERE job_id IN (SELECT id FROM expired_jobs);
DELETE FROM jobs WHERE id IN (SELECT id FROM expired_jobs);

COMMIT;
