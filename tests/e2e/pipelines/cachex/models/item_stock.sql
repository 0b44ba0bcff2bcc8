-- $1: text[] of skus to recompute (NULL = all), $2: now (unused)
SELECT sku, qty, price, place
FROM cx.items
WHERE $1::text[] IS NULL OR sku = ANY ($1::text[])
