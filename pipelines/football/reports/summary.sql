-- summary: Competition,Number of Teams, by count desc then name desc. From
-- the competitions LEFT JOIN the facts, so a competition whose team list
-- came back empty is listed with 0. $1: now (timestamptz; referenced so the
-- statement takes its one parameter, not used otherwise).
SELECT c.name AS "Competition", count(f.team_id)::bigint AS "Number of Teams"
FROM (SELECT $1::timestamptz) AS fr_now (now)
CROSS JOIN football.dim_competitions c
LEFT JOIN football.fact_competitions f ON f.competition_id = c.id
GROUP BY c.id, c.name
ORDER BY count(f.team_id) DESC, c.name DESC
