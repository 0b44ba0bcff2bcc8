-- Hires per department and job in year $1, by quarter (Q1..Q4 always
-- present), departments and jobs with at least one hire that year; byte order.
SELECT d.department, j.job,
       count(*) FILTER (WHERE extract(quarter FROM e.datetime AT TIME ZONE 'UTC') = 1)::bigint AS "Q1",
       count(*) FILTER (WHERE extract(quarter FROM e.datetime AT TIME ZONE 'UTC') = 2)::bigint AS "Q2",
       count(*) FILTER (WHERE extract(quarter FROM e.datetime AT TIME ZONE 'UTC') = 3)::bigint AS "Q3",
       count(*) FILTER (WHERE extract(quarter FROM e.datetime AT TIME ZONE 'UTC') = 4)::bigint AS "Q4"
FROM hr.hired_employees e
JOIN hr.departments d ON d.id = e.department_id
JOIN hr.jobs j ON j.id = e.job_id
WHERE e.datetime >= make_timestamptz($1::int, 1, 1, 0, 0, 0, 'UTC')
  AND e.datetime < make_timestamptz($1::int + 1, 1, 1, 0, 0, 0, 'UTC')
  AND e.deleted_at IS NULL
GROUP BY d.department, j.job
ORDER BY d.department COLLATE "C", j.job COLLATE "C"
