-- Every session row, complete or not.
SELECT count(*)::bigint AS sessions FROM sessions.sessions
