-- The latest 20 complete sessions of a player by end time (ts = end_ts).
-- $1: player_id. Ties on end_ts by session_id, so pages are stable.
SELECT player_id, session_id, country, end_ts AS ts
FROM sessions.sessions
WHERE player_id = $1 AND start_ts IS NOT NULL AND end_ts IS NOT NULL
ORDER BY end_ts DESC, session_id
LIMIT 20
