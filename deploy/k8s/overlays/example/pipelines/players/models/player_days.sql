-- player_days: one row per player and UTC day, maintained from each batch of
-- events (an aggregate model: this SELECT reads only the batch's rows, as
-- "batch", and pipeline.yaml says how each column merges into the stored
-- row). A day is the UTC date of timestamp_utc; date_utc is ignored.
SELECT player_id,
       (timestamp_utc AT TIME ZONE 'UTC')::date AS day,
       1 AS events,
       timestamp_utc AS last_ts,
       country,
       CASE WHEN name = 'srvTournamentFinished' THEN 1 END AS matches,
       CASE WHEN name = 'srvTransactionCompleted' THEN 1 END AS purchases,
       CASE WHEN name = 'srvTransactionCompleted' THEN timestamp_utc END AS purchase_ts,
       deposit_amount AS deposits,
       CASE WHEN name = 'srvTournamentFinished' AND tournament_score IS NOT NULL THEN timestamp_utc END AS score_ts,
       tournament_score AS scores
FROM batch
