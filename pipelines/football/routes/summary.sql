-- GET /reports/football/summary: the football report as rows
-- {"competition", "teams"}, by teams desc then name desc; a competition whose
-- team list came back empty is listed with 0 (competitions LEFT JOIN facts).
SELECT c.name AS competition, count(f.team_id)::bigint AS teams
FROM football.dim_competitions c
LEFT JOIN football.fact_competitions f ON f.competition_id = c.id
GROUP BY c.id, c.name
ORDER BY count(f.team_id) DESC, c.name DESC
