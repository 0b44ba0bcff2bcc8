-- GET /ohlc/{symbol}?from=&to=&limit=: hourly candles oldest first, from/to
-- inclusive on open_time (NULL = unbounded). $1 symbol (upper-cased, USDT
-- appended to a bare base asset by the route), $2 from, $3 to, $4 limit.
SELECT symbol, open_time, open, high, low, close, volume
FROM crypto.ohlc_hourly
WHERE symbol = $1
  AND ($2::timestamptz IS NULL OR open_time >= $2::timestamptz)
  AND ($3::timestamptz IS NULL OR open_time <= $3::timestamptz)
ORDER BY open_time
LIMIT $4::int
