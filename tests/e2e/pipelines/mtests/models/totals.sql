-- totals: one row per player, merged from each batch of scores (read here
-- as batch_rows): points summed, plays counted.
SELECT player, points, 1 AS plays
FROM batch_rows
