-- top: board's points x 10, for the players whose board rows changed ($1).
SELECT player, points * 10 AS score
FROM mtests.board
WHERE $1::text[] IS NULL OR player = ANY ($1::text[])
