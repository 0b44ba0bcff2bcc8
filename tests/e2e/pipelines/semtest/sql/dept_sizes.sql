SELECT e.department_id, count(*)::bigint AS employees
FROM semtest.employees e
WHERE e.department_id IS NOT NULL
  AND ($1::text[] IS NULL OR e.department_id::text = ANY ($1::text[]))
GROUP BY e.department_id
