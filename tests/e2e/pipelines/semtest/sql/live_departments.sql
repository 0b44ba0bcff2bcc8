SELECT id, department, $1::timestamptz AS generated_at
FROM semtest.departments
WHERE deleted_at IS NULL
ORDER BY id
