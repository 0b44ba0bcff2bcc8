-- fact_competitions: which team plays in which competition. Composite key:
-- always recomputed in full ($1 is NULL).
SELECT t.competition_id, t.team_id
FROM football.teams t
WHERE $1::text[] IS NULL OR t.competition_id::text = ANY ($1::text[])
