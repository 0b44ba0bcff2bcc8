-- $1: text[] of ids to recompute (NULL = all), $2: now (unused)
SELECT id, name, price, price * 2 AS double_price
FROM kvtest.items
WHERE $1::text[] IS NULL OR id::text = ANY ($1::text[])
