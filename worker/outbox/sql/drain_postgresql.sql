-- The drain's per-job writes on PostgreSQL, each one statement (run in autocommit: one
-- round trip, no BEGIN/COMMIT). The fence is a CTE every other part selects from, so a
-- refused fence writes nothing at all. Their plain equivalents, one statement per part in
-- one transaction, are in drain.sql (SQLite, and the reference for what these do).
-- Parameters inside a SELECT list have no type to infer: hence the CASTs.

-- name: start_job
-- claim_branch_for_start + start_job (+ release_leftover_members) of drain.sql. Both rows
-- are locked before either is written, the branch first (as the operator tools do), each
-- re-checked on its latest version: under READ COMMITTED a plain UPDATE's subquery would
-- read the statement's snapshot, so a skip or set-next committed meanwhile could let the
-- counter move while the job's write is refused. Here either both are written or neither.
WITH branch AS (
    SELECT id
      FROM branches
     WHERE id = :branch_id
       AND fencing_token = :token
       AND lease_until >= :now
       AND (CAST(:counter AS text) IS NULL
            OR (:counter = 'invcNo' AND next_invc_no = :number)
            OR (:counter = 'sarNo' AND next_sar_no = :number))
       FOR UPDATE
),
job AS (
    SELECT id
      FROM jobs
     WHERE id = :job_id
       AND state = :read_state
       AND invc_no IS NOT DISTINCT FROM CAST(:read_invc_no AS bigint)
       AND sar_no IS NOT DISTINCT FROM CAST(:read_sar_no AS bigint)
       AND EXISTS (SELECT 1 FROM branch)
       FOR UPDATE
),
fence AS (
    UPDATE branches
       SET lease_until = COALESCE(:lease_until, lease_until),
           next_invc_no = CASE WHEN :counter = 'invcNo' THEN next_invc_no + 1 ELSE next_invc_no END,
           next_sar_no = CASE WHEN :counter = 'sarNo' THEN next_sar_no + 1 ELSE next_sar_no END
     WHERE id IN (SELECT id FROM branch) AND EXISTS (SELECT 1 FROM job)
    RETURNING 1 AS ok
),
-- release_leftover_members of drain.sql: a body frozen now carries no earlier member
released AS (
    UPDATE jobs
       SET state = 'pending', merged_into = NULL, updated_at = :now
     WHERE merged_into IN (SELECT id FROM job)
       AND state = 'merged'
       AND CAST(:body AS text) IS NOT NULL
       AND EXISTS (SELECT 1 FROM fence)
)
UPDATE jobs
   SET state = 'in_flight',
       attempts = :attempts,
       maybe_recorded = :maybe_recorded,
       body = COALESCE(:body, body),
       invc_no = COALESCE(:invc_no, invc_no),
       sar_no = COALESCE(:sar_no, sar_no),
       updated_at = :now
 WHERE id IN (SELECT id FROM job) AND EXISTS (SELECT 1 FROM fence)

-- name: accept_job_reading_head
-- accept_job + insert_attempt + insert_event + add_stock (per item), then read_head of
-- drain.sql, in one statement. The SELECT's snapshot
-- predates the statement's own writes: it leaves the accepted job out, and a dependency on
-- it still shows its old state (the store counts it as accepted), and so does it as the
-- carrier of a superseded dependency (hence carrier.id = :job_id). accepted: 0 if the fence
-- refused the write.
WITH fence AS (
    SELECT 1 AS ok FROM branches WHERE id = :branch_id AND fencing_token = :token
),
attempt AS (
    INSERT INTO attempts (job_id, number, kra_number, started_at, latency_s, outcome,
                          result_code, message, http_status, error, request_hash,
                          fencing_token, worker)
    SELECT CAST(:job_id AS bigint), CAST(:a_number AS integer), CAST(:a_kra_number AS bigint),
           CAST(:a_started_at AS double precision), CAST(:a_latency_s AS double precision),
           CAST(:a_outcome AS text), CAST(:a_result_code AS text), CAST(:a_message AS text),
           CAST(:a_http_status AS integer), CAST(:a_error AS text),
           CAST(:a_request_hash AS text), CAST(:token AS bigint), CAST(:a_worker AS text)
      FROM fence
),
event AS (
    INSERT INTO result_events (job_id, tin, state, body, created_at)
    SELECT CAST(:job_id AS bigint), CAST(:e_tin AS text), 'accepted', CAST(:e_body AS text),
           CAST(:now AS double precision)
      FROM fence
),
stock AS (
    INSERT INTO stock_balances (branch_id, item_cd, qty)
    SELECT CAST(:branch_id AS bigint), s.item_cd, s.qty
      FROM fence, unnest(CAST(:stock_items AS text[]), CAST(:stock_qtys AS numeric[]))
                  AS s (item_cd, qty)
    ON CONFLICT (branch_id, item_cd) DO UPDATE SET qty = stock_balances.qty + excluded.qty
),
accepted AS (
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
     WHERE id = :job_id AND EXISTS (SELECT 1 FROM fence)
    RETURNING 1 AS ok
)
SELECT (SELECT count(*) FROM accepted) AS accepted,
       b.next_seq AS branch_next_seq,
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
                                    AND (carrier.state = 'accepted' OR carrier.id = :job_id))
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
                AND id <> :job_id
              ORDER BY seq
              LIMIT 2) AS w ON 1 = 1
  LEFT JOIN job_dependencies AS d ON d.job_id = w.id
  LEFT JOIN jobs AS dep ON dep.id = d.depends_on_id
 WHERE b.id = :branch_id
 ORDER BY w.seq

-- name: accept_job_starting_next
-- accept_job_reading_head, and in the same statement the next job's start_job (the drain
-- planned it from what it knew before this acceptance: worker/drain.py). The acceptance is
-- fenced by the token alone, as in accept_job_reading_head; the start keeps every guard of
-- start_job on top of it (a live lease, the counter as read, the job as read), checked on
-- the rows locked, the branch first; and, as a fresh head read would, that no other
-- active job comes before it (one may have been unblocked, e.g. by its dependency's
-- acceptance in another branch, since the drain's head read). A start refused by its guards
-- writes nothing and the acceptance still lands: started = 0, and the drain prepares the
-- next job the usual way.
-- The head read leaves the accepted job out; the next job shows as it was before its start
-- (the snapshot), so the head means the same whether the start took or not.
WITH branch AS (
    SELECT id,
           lease_until >= :now
           AND (CAST(:n_counter AS text) IS NULL
                OR (:n_counter = 'invcNo' AND next_invc_no = :n_number)
                OR (:n_counter = 'sarNo' AND next_sar_no = :n_number)) AS may_start
      FROM branches
     WHERE id = :branch_id
       AND fencing_token = :token
       FOR UPDATE
),
next_job AS (
    SELECT nj.id
      FROM jobs AS nj
     WHERE nj.id = :n_job_id
       AND nj.state = :n_read_state
       AND nj.invc_no IS NOT DISTINCT FROM CAST(:n_read_invc_no AS bigint)
       AND nj.sar_no IS NOT DISTINCT FROM CAST(:n_read_sar_no AS bigint)
       AND NOT EXISTS (SELECT 1
                         FROM jobs AS ahead
                        WHERE ahead.branch_id = :branch_id
                          AND ahead.state IN ('pending', 'in_flight', 'retry_wait', 'unknown')
                          AND ahead.seq < nj.seq
                          AND ahead.id <> :job_id)
       AND EXISTS (SELECT 1 FROM branch WHERE may_start)
       FOR UPDATE OF nj
),
next_branch AS (
    UPDATE branches
       SET lease_until = COALESCE(:n_lease_until, lease_until),
           next_invc_no = CASE WHEN :n_counter = 'invcNo' THEN next_invc_no + 1 ELSE next_invc_no END,
           next_sar_no = CASE WHEN :n_counter = 'sarNo' THEN next_sar_no + 1 ELSE next_sar_no END
     WHERE id IN (SELECT id FROM branch WHERE may_start) AND EXISTS (SELECT 1 FROM next_job)
    RETURNING 1 AS ok
),
started AS (
    UPDATE jobs
       SET state = 'in_flight',
           attempts = :n_attempts,
           maybe_recorded = :n_maybe_recorded,
           body = COALESCE(:n_body, body),
           invc_no = COALESCE(:n_invc_no, invc_no),
           sar_no = COALESCE(:n_sar_no, sar_no),
           updated_at = :now
     WHERE id IN (SELECT id FROM next_job) AND EXISTS (SELECT 1 FROM next_branch)
    RETURNING 1 AS ok
),
-- release_leftover_members of drain.sql, for the next job's first start
released AS (
    UPDATE jobs
       SET state = 'pending', merged_into = NULL, updated_at = :now
     WHERE merged_into IN (SELECT id FROM next_job)
       AND state = 'merged'
       AND CAST(:n_body AS text) IS NOT NULL
       AND EXISTS (SELECT 1 FROM next_branch)
),
attempt AS (
    INSERT INTO attempts (job_id, number, kra_number, started_at, latency_s, outcome,
                          result_code, message, http_status, error, request_hash,
                          fencing_token, worker)
    SELECT CAST(:job_id AS bigint), CAST(:a_number AS integer), CAST(:a_kra_number AS bigint),
           CAST(:a_started_at AS double precision), CAST(:a_latency_s AS double precision),
           CAST(:a_outcome AS text), CAST(:a_result_code AS text), CAST(:a_message AS text),
           CAST(:a_http_status AS integer), CAST(:a_error AS text),
           CAST(:a_request_hash AS text), CAST(:token AS bigint), CAST(:a_worker AS text)
      FROM branch
),
event AS (
    INSERT INTO result_events (job_id, tin, state, body, created_at)
    SELECT CAST(:job_id AS bigint), CAST(:e_tin AS text), 'accepted', CAST(:e_body AS text),
           CAST(:now AS double precision)
      FROM branch
),
stock AS (
    INSERT INTO stock_balances (branch_id, item_cd, qty)
    SELECT CAST(:branch_id AS bigint), s.item_cd, s.qty
      FROM branch, unnest(CAST(:stock_items AS text[]), CAST(:stock_qtys AS numeric[]))
                   AS s (item_cd, qty)
    ON CONFLICT (branch_id, item_cd) DO UPDATE SET qty = stock_balances.qty + excluded.qty
),
accepted AS (
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
     WHERE id = :job_id AND EXISTS (SELECT 1 FROM branch)
    RETURNING 1 AS ok
)
SELECT (SELECT count(*) FROM accepted) AS accepted,
       (SELECT count(*) FROM started) AS started,
       b.next_seq AS branch_next_seq,
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
                                    AND (carrier.state = 'accepted' OR carrier.id = :job_id))
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
                AND id <> :job_id
              ORDER BY seq
              LIMIT 2) AS w ON 1 = 1
  LEFT JOIN job_dependencies AS d ON d.job_id = w.id
  LEFT JOIN jobs AS dep ON dep.id = d.depends_on_id
 WHERE b.id = :branch_id
 ORDER BY w.seq

-- name: retry_job
-- retry_job + insert_attempt of drain.sql.
WITH fence AS (
    SELECT 1 AS ok FROM branches WHERE id = :branch_id AND fencing_token = :token
),
attempt AS (
    INSERT INTO attempts (job_id, number, kra_number, started_at, latency_s, outcome,
                          result_code, message, http_status, error, request_hash,
                          fencing_token, worker)
    SELECT CAST(:job_id AS bigint), CAST(:a_number AS integer), CAST(:a_kra_number AS bigint),
           CAST(:a_started_at AS double precision), CAST(:a_latency_s AS double precision),
           CAST(:a_outcome AS text), CAST(:a_result_code AS text), CAST(:a_message AS text),
           CAST(:a_http_status AS integer), CAST(:a_error AS text),
           CAST(:a_request_hash AS text), CAST(:token AS bigint), CAST(:a_worker AS text)
      FROM fence
)
UPDATE jobs
   SET state = :state,
       next_attempt_at = :next_attempt_at,
       maybe_recorded = :maybe_recorded,
       result_code = :result_code,
       result_message = :result_message,
       updated_at = :now
 WHERE id = :job_id AND EXISTS (SELECT 1 FROM fence)
