-- sessions: one row per session_id from its start/end events (docs/pipelines.md).
-- $1: text[] of session_ids to recompute (NULL = all); $2: now (unused: the
-- events' retention already dropped what is too old).
-- start_ts = the earliest start, end_ts = the latest end, whatever the order
-- the events arrived in (min/max are order-free; a repeat is the same key of
-- session_events, so it changes nothing). Complete = both present, even when
-- end_ts < start_ts. player_id and country: the least of the values seen, so
-- conflicting events still give a deterministic row.
SELECT e.session_id,
       min(e.player_id) AS player_id,
       min(e.country) FILTER (WHERE e.event = 'start') AS country,
       min(e.ts) FILTER (WHERE e.event = 'start') AS start_ts,
       max(e.ts) FILTER (WHERE e.event = 'end') AS end_ts
FROM sessions.session_events e
CROSS JOIN (SELECT $2::timestamptz) AS fr_now (now)
WHERE $1::text[] IS NULL OR e.session_id = ANY ($1::text[])
GROUP BY e.session_id
