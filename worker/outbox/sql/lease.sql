-- The branch lease: who may send a branch's jobs, fenced by a token every write checks.
-- Parameters are :name (SQLAlchemy text()); each statement is loaded by its name.

-- name: claim_lease
-- Take the branch if its lease is free or expired and it is not parked; bump the token.
UPDATE branches
   SET lease_owner = :owner,
       lease_until = :now + :ttl,
       fencing_token = fencing_token + 1
 WHERE id = :branch_id
   AND parked_reason IS NULL
   AND (lease_until IS NULL OR lease_until < :now)
RETURNING fencing_token

-- name: release_lease_if_unchanged
-- Give the branch back with when it is next due, only if no job was enqueued since the
-- drain last looked (next_seq unchanged).
UPDATE branches
   SET lease_owner = NULL, lease_until = NULL, wake_after = :wake_after
 WHERE id = :branch_id AND fencing_token = :token AND next_seq = :seen_next_seq

-- name: release_lease
-- Give the branch back, leaving wake_after as it is.
UPDATE branches
   SET lease_owner = NULL, lease_until = NULL
 WHERE id = :branch_id AND fencing_token = :token

-- name: release_lease_due_at
-- Give the branch back, due at :wake_after (new work arrived, or an error).
UPDATE branches
   SET lease_owner = NULL, lease_until = NULL, wake_after = :wake_after
 WHERE id = :branch_id AND fencing_token = :token

-- name: lease_holds
-- Whether the lease (:token) still holds at :now: 1, else 0 (taken over, or run out).
SELECT CASE WHEN fencing_token = :token AND lease_until >= :now THEN 1 ELSE 0 END
  FROM branches
 WHERE id = :branch_id

-- name: park_branch
-- Stop sending until an operator acts; keep what KRA said it expects next, for set-next.
UPDATE branches
   SET parked_reason = :reason,
       parked_at = :now,
       kra_expected_invc_no = COALESCE(:expected_invc_no, kra_expected_invc_no),
       kra_expected_sar_no = COALESCE(:expected_sar_no, kra_expected_sar_no)
 WHERE id = :branch_id AND fencing_token = :token

-- name: wake_branch
-- Mark a branch due now (the sweeper wakes it if no message does).
UPDATE branches
   SET wake_after = :now
 WHERE id = :branch_id AND (wake_after IS NULL OR wake_after > :now)
