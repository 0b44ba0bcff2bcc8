-- The export of tests/e2e/test_csv_guard.py: the routes' columns. $1 is
-- "now" (referenced so the statement takes its one parameter).
SELECT n.label, n.amount, n.delta
FROM (SELECT $1::timestamptz) AS fr_now (now)
CROSS JOIN cg.notes n
ORDER BY n.id
