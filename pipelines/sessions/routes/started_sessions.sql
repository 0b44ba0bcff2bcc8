-- Sessions started in the last $2 hours up to now ($3) in country $1,
-- newest first (ts = start_ts). Window: now - hours < start_ts <= now.
SELECT player_id, session_id, country, start_ts AS ts
FROM sessions.sessions
WHERE country = $1
  AND start_ts > $3::timestamptz - make_interval(hours => $2::int)
  AND start_ts <= $3::timestamptz
ORDER BY start_ts DESC, session_id
