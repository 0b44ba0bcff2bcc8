-- $1: text[] of ids to recompute (NULL = all), $2: now (unused)
SELECT id, body
FROM ryw.notes
WHERE deleted_at IS NULL AND ($1::text[] IS NULL OR id::text = ANY ($1::text[]))
