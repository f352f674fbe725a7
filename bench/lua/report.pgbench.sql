-- The naive debit: one transaction per call, one balance row updated, one ledger row added.
\set n random(1, :customers)
BEGIN;
UPDATE balances SET stable_micros = stable_micros - 1 WHERE customer_id = (SELECT customer_id FROM bench_customers WHERE n = :n);
INSERT INTO ledger_entries (customer_id, bucket, delta_micros, balance_after_micros, actor, reason, reference, created_at)
  VALUES ((SELECT customer_id FROM bench_customers WHERE n = :n), 'stable', -1, 0, 'bench', 'api_call', NULL, now());
END;
