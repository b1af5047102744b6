-- The drain's statements, valid on SQLite and PostgreSQL. Every write to a job of the
-- leased branch is fenced: it happens only while (:branch_id, :token) still holds.
-- Active states are written out literally ('pending', 'in_flight', 'retry_wait', 'unknown',
-- schemas.jobs.ACTIVE_STATES; a unit test keeps them equal): only then can both planners
-- use the partial index ix_jobs_branch_active_seq.

-- name: read_head
-- The branch's counters and its first two active jobs (the first is the only one ever sent
-- next; the second is what the drain may plan to start along with the first one's
-- acceptance), one row per dependency. The LIMIT is literal: a generic prepared plan must
-- still stop after the first entries of the partial index. wakes_dependents: accepting the job must look at its
-- dependents (some wait in another branch, or are blocked after a replay). A superseded
-- dependency reads as pending until a later stock master of its item in its branch is
-- accepted: only then is the balance it stood for at KRA (its carrier, or any later one:
-- the branch sends in order). A dependent in another branch would otherwise go first.
SELECT b.next_seq AS branch_next_seq,
       b.next_invc_no AS branch_next_invc_no,
       b.next_sar_no AS branch_next_sar_no,
       w.*,
       dep.id AS dep_id,
       CASE WHEN dep.state = 'superseded'
                 AND NOT EXISTS (SELECT 1
                                   FROM jobs AS carrier
                                  WHERE carrier.branch_id = dep.branch_id
                                    AND carrier.stock_item_cd = dep.stock_item_cd
                                    AND carrier.seq > dep.seq
                                    AND carrier.state = 'accepted')
            THEN 'pending'
            ELSE dep.state END AS dep_state,
       EXISTS (SELECT 1
                 FROM job_dependencies AS wd
                 JOIN jobs AS wj ON wj.id = wd.job_id
                WHERE wd.depends_on_id = w.id
                  AND (wj.branch_id <> :branch_id OR wj.state = 'blocked')) AS wakes_dependents
  FROM branches AS b
  LEFT JOIN (SELECT id, tin, bhf_id, seq, kind, idempotency_key, payload, original_job_id,
                    state, attempts, next_attempt_at, maybe_recorded, invc_no, sar_no, body,
                    created_at
               FROM jobs
              WHERE branch_id = :branch_id
                AND state IN ('pending', 'in_flight', 'retry_wait', 'unknown')
              ORDER BY seq
              LIMIT 2) AS w ON 1 = 1
  LEFT JOIN job_dependencies AS d ON d.job_id = w.id
  LEFT JOIN jobs AS dep ON dep.id = d.depends_on_id
 WHERE b.id = :branch_id
 ORDER BY w.seq

-- name: claim_branch_for_start
-- A job's start on its branch row: the fence, refused once the lease has run out (the
-- operator tools then treat the branch as not being drained); the lease pushed out when
-- :lease_until is set; KRA's next number of :counter taken, compare-and-set on :number (the
-- value the head read showed, which the body was built with).
UPDATE branches
   SET lease_until = COALESCE(:lease_until, lease_until),
       next_invc_no = CASE WHEN :counter = 'invcNo' THEN next_invc_no + 1 ELSE next_invc_no END,
       next_sar_no = CASE WHEN :counter = 'sarNo' THEN next_sar_no + 1 ELSE next_sar_no END
 WHERE id = :branch_id
   AND fencing_token = :token
   AND lease_until >= :now
   AND (CAST(:counter AS text) IS NULL
        OR (:counter = 'invcNo' AND next_invc_no = :number)
        OR (:counter = 'sarNo' AND next_sar_no = :number))

-- name: start_job
-- Mark the job in_flight, committed before the call: the body (NULL: keep the frozen one)
-- and the number it was built with are stored with it. Compare-and-set on the job as the
-- head read showed it (:read_*): an operator's skip or set-next in between writes nothing.
-- The same guards (with claim_branch_for_start's) are written out twice more, on
-- PostgreSQL: drain_postgresql.sql start_job and accept_job_starting_next (the fused
-- step). A guard changed here is changed there too.
UPDATE jobs
   SET state = 'in_flight',
       attempts = :attempts,
       maybe_recorded = :maybe_recorded,
       body = COALESCE(:body, body),
       invc_no = COALESCE(:invc_no, invc_no),
       sar_no = COALESCE(:sar_no, sar_no),
       updated_at = :now
 WHERE id = :job_id
   AND state = :read_state
   AND invc_no IS NOT DISTINCT FROM CAST(:read_invc_no AS bigint)
   AND sar_no IS NOT DISTINCT FROM CAST(:read_sar_no AS bigint)
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: accept_job
UPDATE jobs
   SET state = 'accepted',
       result_code = :result_code,
       result_message = :result_message,
       next_attempt_at = NULL,
       accepted_at = :now,
       updated_at = :now,
       receipt = :receipt,
       receipt_missing = COALESCE(:receipt_missing, receipt_missing),
       qr_url = :qr_url,
       sdc_id = COALESCE(:sdc_id, sdc_id),
       mrc_no = COALESCE(:mrc_no, mrc_no)
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: retry_job
-- :state is retry_wait or unknown.
UPDATE jobs
   SET state = :state,
       next_attempt_at = :next_attempt_at,
       maybe_recorded = :maybe_recorded,
       result_code = :result_code,
       result_message = :result_message,
       updated_at = :now
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: kill_job
UPDATE jobs
   SET state = 'dead',
       result_code = :result_code,
       result_message = :result_message,
       next_attempt_at = NULL,
       updated_at = :now
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: kill_job_dropping_body
-- Dead, holding no number: the body goes (a replay builds it again).
UPDATE jobs
   SET state = 'dead',
       result_code = :result_code,
       result_message = :result_message,
       next_attempt_at = NULL,
       body = NULL,
       updated_at = :now
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: kill_job_releasing_number
-- Dead, and KRA provably does not hold its number: the number and the body go.
UPDATE jobs
   SET state = 'dead',
       result_code = :result_code,
       result_message = :result_message,
       next_attempt_at = NULL,
       body = NULL,
       invc_no = NULL,
       sar_no = NULL,
       updated_at = :now
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: park_job_releasing_number
-- The job waits at the head of a parked branch; KRA provably does not hold its number.
UPDATE jobs
   SET state = 'pending', body = NULL, invc_no = NULL, sar_no = NULL, updated_at = :now
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: park_job_rebuilding_body
-- No attempt may have reached KRA: keep the number, rebuild the body once the cause is fixed.
UPDATE jobs
   SET state = 'pending', body = NULL, updated_at = :now
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: park_job_keeping_body
-- An attempt may have reached KRA: a resend must repeat the exact body.
UPDATE jobs
   SET state = 'pending', maybe_recorded = TRUE, updated_at = :now
 WHERE id = :job_id
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: block_job
-- Compare-and-set on the job's state as the head read showed it (:read_state), and on a
-- lease that has not run out: an operator's skip after that read (allowed once the lease
-- ran out) stands, and its released number is not left held by a blocked job.
UPDATE jobs
   SET state = 'blocked', blocked_by = :blocked_by, updated_at = :now
 WHERE id = :job_id
   AND state = :read_state
   AND EXISTS (SELECT 1 FROM branches
                WHERE id = :branch_id AND fencing_token = :token AND lease_until >= :now)

-- name: give_back_invc_no
-- Hand a number back after a definitive rejection, if nothing was allocated after it.
UPDATE branches
   SET next_invc_no = :number
 WHERE id = :branch_id AND fencing_token = :token AND next_invc_no = :number + 1

-- name: give_back_sar_no
UPDATE branches
   SET next_sar_no = :number
 WHERE id = :branch_id AND fencing_token = :token AND next_sar_no = :number + 1

-- name: lock_branch
-- Take the branch row's lock first (a write that changes nothing), fenced: a result that
-- also writes the branch (a number given back, a park) then locks branch-then-job, the
-- order an operator's skip and set-next lock in, so the two wait for each other instead of
-- deadlocking.
UPDATE branches
   SET fencing_token = fencing_token
 WHERE id = :branch_id AND fencing_token = :token

-- name: insert_attempt
INSERT INTO attempts (job_id, number, kra_number, started_at, latency_s, outcome,
                      result_code, message, http_status, error, request_hash,
                      fencing_token, worker)
VALUES (:job_id, :number, :kra_number, :started_at, :latency_s, :outcome,
        :result_code, :message, :http_status, :error, :request_hash,
        :fencing_token, :worker)

-- name: insert_event
INSERT INTO result_events (job_id, tin, state, body, created_at)
VALUES (:job_id, :tin, :state, :body, :created_at)

-- name: add_stock
-- An accepted movement's quantity for one item, added to the branch's balance.
INSERT INTO stock_balances (branch_id, item_cd, qty)
VALUES (:branch_id, :item_cd, :qty)
ON CONFLICT (branch_id, item_cd) DO UPDATE SET qty = stock_balances.qty + excluded.qty

-- name: stock_balance
SELECT qty FROM stock_balances WHERE branch_id = :branch_id AND item_cd = :item_cd

-- name: job_invc_no
SELECT invc_no FROM jobs WHERE id = :job_id

-- name: jobs_with_trader_invoice
-- Our other sales and credit notes of :tin carrying :trd_invc_no (ix_jobs_tin_trd_invc_no).
SELECT id, idempotency_key, state
  FROM jobs
 WHERE tin = :tin AND trd_invc_no = :trd_invc_no AND id <> :exclude_id
 ORDER BY id

-- name: dependents_in_state
-- Jobs in :state that directly depend on :job_id.
SELECT j.id, j.branch_id, j.tin, j.idempotency_key, j.kind, j.state, d.depends_on_id
  FROM jobs AS j
  JOIN job_dependencies AS d ON d.job_id = j.id
 WHERE d.depends_on_id = :job_id AND j.state = :state

-- name: move_dependent
-- A dependent outside the lease holder's branch moves between pending and blocked, states
-- no drain is writing: the :from_state guard is its fence.
UPDATE jobs
   SET state = :to_state, blocked_by = :blocked_by, updated_at = :now
 WHERE id = :job_id AND state = :from_state

-- name: stock_master_facts
-- What coalescing needs to know of a stock master about to be sent (worker/coalesce.py), in
-- one read: the latest stock master of the same item still to send in the branch; whether
-- KRA already accepted one of this item from this branch; whether any job depends on it.
-- A later one with a dependency that will never go (dead, blocked, skipped) is no carrier:
-- it waits behind that dependency for ever, and KRA would keep the item's stale balance.
-- The item lookups walk ix_jobs_branch_stock_item_seq, the dependents one
-- ix_job_dependencies_depends_on.
SELECT (SELECT later.id
          FROM jobs AS later
         WHERE later.branch_id = :branch_id
           AND later.stock_item_cd = :item_cd
           AND later.seq > :seq
           AND later.state IN ('pending', 'in_flight', 'retry_wait', 'unknown')
           AND NOT EXISTS (SELECT 1
                             FROM job_dependencies AS ld
                             JOIN jobs AS dep ON dep.id = ld.depends_on_id
                            WHERE ld.job_id = later.id
                              AND dep.state IN ('dead', 'blocked', 'skipped'))
         ORDER BY later.seq DESC
         LIMIT 1) AS later_id,
       EXISTS (SELECT 1
                 FROM jobs AS earlier
                WHERE earlier.branch_id = :branch_id
                  AND earlier.stock_item_cd = :item_cd
                  AND earlier.seq < :seq
                  AND earlier.state = 'accepted') AS item_reported,
       EXISTS (SELECT 1 FROM job_dependencies AS d WHERE d.depends_on_id = :job_id)
           AS has_dependents

-- name: supersede_job
-- End a never-sent stock master without a call: a later one (:superseded_by) carries its
-- balance. Only while it is still as the head read showed it: pending, nothing frozen, and
-- still no dependent (stock_master_facts read that in an earlier transaction; a dependent
-- enqueued since asked for this report to come first). A refused write re-reads the head.
UPDATE jobs
   SET state = 'superseded',
       superseded_by = :superseded_by,
       next_attempt_at = NULL,
       updated_at = :now
 WHERE id = :job_id
   AND state = 'pending'
   AND body IS NULL
   AND NOT maybe_recorded
   AND NOT EXISTS (SELECT 1 FROM job_dependencies WHERE depends_on_id = :job_id)
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: sale_past_deferred_stock
-- What lets a later sale go before the never-sent stock-out at the branch's head (job :job_id
-- at :seq; worker/defer.py), in one read: the branch's counters and the first active sale or
-- credit note after the head, one row per dependency, as read_head gives the head; how many
-- active stock movements it would pass (the head included); how many other active jobs lie
-- between, which nothing may pass (an item, a stock-in, a job already started); and when the
-- head's last dependency was accepted (it has been waiting since then at most). A job between
-- the two that a sale may pass is a never-sent stock-out or a pending stock master: the sale
-- changes no balance, so a stock master sent after it still reports KRA's running balance.
-- A stock movement with no sar_ty_cd (enqueued by an intake from before migration 0010) is a
-- barrier: it may be a stock-in.
SELECT b.next_seq AS branch_next_seq,
       b.next_invc_no AS branch_next_invc_no,
       b.next_sar_no AS branch_next_sar_no,
       w.*,
       dep.id AS dep_id,
       CASE WHEN dep.state = 'superseded'
                 AND NOT EXISTS (SELECT 1
                                   FROM jobs AS carrier
                                  WHERE carrier.branch_id = dep.branch_id
                                    AND carrier.stock_item_cd = dep.stock_item_cd
                                    AND carrier.seq > dep.seq
                                    AND carrier.state = 'accepted')
            THEN 'pending'
            ELSE dep.state END AS dep_state,
       EXISTS (SELECT 1
                 FROM job_dependencies AS wd
                 JOIN jobs AS wj ON wj.id = wd.job_id
                WHERE wd.depends_on_id = w.id
                  AND (wj.branch_id <> :branch_id OR wj.state = 'blocked')) AS wakes_dependents,
       (SELECT count(*)
          FROM jobs AS x
         WHERE x.branch_id = :branch_id
           AND x.seq >= :seq
           AND x.seq < w.seq
           AND x.state IN ('pending', 'in_flight', 'retry_wait', 'unknown')
           AND x.kind = 'stock_io') AS deferred_jobs,
       (SELECT count(*)
          FROM jobs AS x
         WHERE x.branch_id = :branch_id
           AND x.seq > :seq
           AND x.seq < w.seq
           AND x.state IN ('pending', 'in_flight', 'retry_wait', 'unknown')
           AND NOT (x.kind = 'stock_master' AND x.state = 'pending')
           AND NOT (x.kind = 'stock_io' AND x.state = 'pending' AND x.body IS NULL
                    AND NOT x.maybe_recorded
                    AND COALESCE(x.sar_ty_cd, '') LIKE '1%')) AS barriers,
       (SELECT max(r.accepted_at)
          FROM job_dependencies AS rd
          JOIN jobs AS r ON r.id = rd.depends_on_id
         WHERE rd.job_id = :job_id) AS head_ready_since
  FROM branches AS b
  LEFT JOIN (SELECT id, tin, bhf_id, seq, kind, idempotency_key, payload, original_job_id,
                    state, attempts, next_attempt_at, maybe_recorded, invc_no, sar_no, body,
                    created_at
               FROM jobs
              WHERE branch_id = :branch_id
                AND state IN ('pending', 'in_flight', 'retry_wait', 'unknown')
                AND seq > :seq
                AND kind IN ('sale', 'credit_note')
              ORDER BY seq
              LIMIT 1) AS w ON 1 = 1
  LEFT JOIN job_dependencies AS d ON d.job_id = w.id
  LEFT JOIN jobs AS dep ON dep.id = d.depends_on_id
 WHERE b.id = :branch_id
 ORDER BY w.seq

-- name: merged_members
-- The stock-outs whose lines went inside carrier :job_id's frozen body, in seq order
-- (ix_jobs_merged_into): read when it is resent.
SELECT id, seq, payload
  FROM jobs
 WHERE merged_into = :job_id AND state = 'merged'
 ORDER BY seq

-- name: merge_candidates
-- Stock-outs of :sar_ty_cd after carrier :seq that may go inside its send: never sent, not
-- merged yet, every dependency accepted (the sales they release are at KRA), and before the
-- first active job they might depend on. Merging moves a stock-out EARLIER, to the carrier's
-- place: it may pass only jobs whose order against it cannot matter, never-sent stock-outs
-- (a sale whose stock-out came without its declared dependency is still a barrier) and
-- pending stock masters whose rsdQty the relay computes (stock_item_cd set: sent later, they
-- report the balance with the merged lines in it). Everything else keeps its place before
-- them: a sale or credit note not yet accepted, an item, a stock-in, a producer's own stock
-- count, a job already started, a stock movement with no sar_ty_cd (an intake from before
-- 0010). At most :max_jobs, in seq order.
SELECT j.id, j.seq, j.payload
  FROM jobs AS j
 WHERE j.branch_id = :branch_id
   AND j.seq > :seq
   AND j.state = 'pending'
   AND j.kind = 'stock_io'
   AND j.sar_ty_cd = :sar_ty_cd
   AND j.body IS NULL
   AND NOT j.maybe_recorded
   AND j.merged_into IS NULL
   AND j.seq < COALESCE((SELECT min(x.seq)
                           FROM jobs AS x
                          WHERE x.branch_id = :branch_id
                            AND x.seq > :seq
                            AND x.state IN ('pending', 'in_flight', 'retry_wait', 'unknown')
                            AND NOT (x.kind = 'stock_master' AND x.state = 'pending'
                                     AND x.stock_item_cd IS NOT NULL)
                            AND NOT (x.kind = 'stock_io' AND x.state = 'pending'
                                     AND x.body IS NULL AND NOT x.maybe_recorded
                                     AND COALESCE(x.sar_ty_cd, '') LIKE '1%')),
                        j.seq + 1)
   AND NOT EXISTS (SELECT 1
                     FROM job_dependencies AS md
                     JOIN jobs AS mdep ON mdep.id = md.depends_on_id
                    WHERE md.job_id = j.id
                      AND mdep.state <> 'accepted')
 ORDER BY j.seq
 LIMIT :max_jobs

-- name: merge_into_carrier
-- Part of a carrier's start (same transaction): a stock-out goes inside its merged send.
-- Compare-and-set on the job as merge_candidates read it.
UPDATE jobs
   SET state = 'merged', merged_into = :carrier_id, updated_at = :now
 WHERE id = :job_id
   AND branch_id = :branch_id
   AND state = 'pending'
   AND body IS NULL
   AND NOT maybe_recorded
   AND merged_into IS NULL
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: members_in_state
-- The stock-outs merged into carrier :job_id that are in :state (for their result events),
-- with the carrier's sarNo.
SELECT m.id, m.idempotency_key, m.kind, m.tin, m.created_at, c.sar_no AS carrier_sar_no
  FROM jobs AS m
  JOIN jobs AS c ON c.id = m.merged_into
 WHERE m.merged_into = :job_id AND m.state = :state
 ORDER BY m.seq

-- name: accept_member
-- The carrier was accepted: so is stock-out :member_id, one its send carried (the drain's
-- job.merged, read with the body it sent), under the carrier's sarNo (same transaction). A
-- row merged into it that this send did not carry is never accepted by it.
UPDATE jobs
   SET state = 'accepted',
       sar_no = (SELECT c.sar_no FROM jobs AS c WHERE c.id = :job_id),
       result_code = :result_code,
       result_message = :result_message,
       next_attempt_at = NULL,
       accepted_at = :now,
       updated_at = :now
 WHERE id = :member_id
   AND merged_into = :job_id
   AND state = 'merged'
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: kill_member
-- The carrier is dead: so is stock-out :member_id, one its send carried (a replay of the
-- carrier brings it back with it; same transaction).
UPDATE jobs
   SET state = 'dead',
       result_code = :result_code,
       result_message = :result_message,
       next_attempt_at = NULL,
       updated_at = :now
 WHERE id = :member_id
   AND merged_into = :job_id
   AND state = 'merged'
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: dissolve_members
-- The carrier parked and its body goes (rebuilt when the park is over): the stock-outs it
-- carried are pending again in their places behind it, to be merged again, or not, when it
-- next starts (same transaction).
UPDATE jobs
   SET state = 'pending', merged_into = NULL, updated_at = :now
 WHERE merged_into = :job_id
   AND state = 'merged'
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)

-- name: release_leftover_members
-- Part of a first start (a body frozen now, :body not NULL): no stock-out still merged into
-- the job can be inside that body (its members are chosen among jobs merged into nothing),
-- so any left over from a send whose body was dropped goes back to pending in its place
-- (every path that drops a carrier's body releases its members; this is the backstop).
UPDATE jobs
   SET state = 'pending', merged_into = NULL, updated_at = :now
 WHERE merged_into = :job_id
   AND state = 'merged'
   AND CAST(:body AS text) IS NOT NULL
   AND EXISTS (SELECT 1 FROM branches WHERE id = :branch_id AND fencing_token = :token)
