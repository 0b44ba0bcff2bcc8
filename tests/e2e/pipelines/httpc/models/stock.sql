-- $1: text[] of skus to recompute (NULL = all), $2: now (unused)
SELECT sku, qty, place
FROM hc.items
WHERE $1::text[] IS NULL OR sku = ANY ($1::text[])
