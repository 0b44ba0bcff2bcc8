SELECT count(*) AS ticks, $1::int AS year
FROM rt.ticks
WHERE extract(year FROM at AT TIME ZONE 'UTC') = $1::int
