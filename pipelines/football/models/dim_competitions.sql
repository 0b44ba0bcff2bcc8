-- dim_competitions: one row per competition. $1: text[] of ids (NULL = all).
SELECT c.id, c.name
FROM football.competitions c
WHERE $1::text[] IS NULL OR c.id::text = ANY ($1::text[])
