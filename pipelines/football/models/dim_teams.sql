-- dim_teams: one row per team, however many competitions it plays in; the
-- name from its lowest competition id (deterministic). $1: text[] of team ids (NULL = all).
SELECT DISTINCT ON (t.team_id) t.team_id AS id, t.name
FROM football.teams t
WHERE $1::text[] IS NULL OR t.team_id::text = ANY ($1::text[])
ORDER BY t.team_id, t.competition_id
