-- Departments that hired more than the mean over the departments that hired
-- in year $1, hired desc (then id).
WITH per AS (
    SELECT d.id, d.department, count(*)::bigint AS hired
    FROM hr.hired_employees e
    JOIN hr.departments d ON d.id = e.department_id
    WHERE e.datetime >= make_timestamptz($1::int, 1, 1, 0, 0, 0, 'UTC')
      AND e.datetime < make_timestamptz($1::int + 1, 1, 1, 0, 0, 0, 'UTC')
      AND e.deleted_at IS NULL
    GROUP BY d.id, d.department
)
SELECT id, department, hired
FROM per
WHERE hired > (SELECT avg(hired) FROM per)
ORDER BY hired DESC, id
