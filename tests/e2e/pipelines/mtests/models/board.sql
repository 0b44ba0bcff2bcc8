-- board: the totals of the touched players ($1 text[], NULL = all).
SELECT player, points, plays
FROM mtests.totals
WHERE $1::text[] IS NULL OR player = ANY ($1::text[])
