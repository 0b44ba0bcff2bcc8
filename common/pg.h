/* pg: an async PostgreSQL client on libpq, driven by uv_poll on the loop
 * (non-blocking connect with PQconnectStartParams/PQconnectPoll, nonblocking
 * sends with PQflush, results dispatched in order). Queries queue in the
 * client and are sent in pipeline mode; COPY FROM STDIN runs outside it.
 * Reconnects with exponential backoff (100 ms .. 5 s) forever; a lost
 * connection completes every pending operation with a NULL result.
 * Notices go to the JSON logger. Loop thread only. */
#ifndef FR_PG_H
#define FR_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

typedef struct fr_pg fr_pg_t;

/* Completion of one operation, exactly once. `res` is borrowed (cleared after
 * the call): the statement's result (check PQresultStatus: PGRES_COMMAND_OK,
 * PGRES_TUPLES_OK, PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED ...), or NULL
 * when the connection was lost, the statement timed out (and was
 * cancelled), or the client is closing. */
typedef void (*fr_pg_cb)(fr_pg_t *pg, PGresult *res, void *data);
typedef void (*fr_pg_state_cb)(fr_pg_t *pg, bool connected, void *data);

/* conninfo: a libpq URI or key=value string. A host name other than
 * "localhost" must be given as hostaddr (no blocking DNS): the client sets
 * hostaddr itself for IP literals and localhost. Returns NULL + err when it
 * does not parse. Does not connect until fr_pg_start. */
fr_pg_t *fr_pg_new(uv_loop_t *loop, const char *conninfo, const char *name, char err[FR_ERR_LEN]);
void fr_pg_set_state_cb(fr_pg_t *pg, fr_pg_state_cb cb, void *data);
/* Per-statement timeout, default 30000 ms; 0 = none. A statement's time
 * runs from when the server starts on it (it heads the statements sent),
 * not from when it was queued. One that runs past it is cancelled alone
 * (PQcancel, from libuv's thread pool) and completes with NULL; the
 * connection and the statements behind it carry on. Only when the cancelled
 * statement has still not ended 2 s later is the connection dropped. */
void fr_pg_set_timeout(fr_pg_t *pg, uint32_t ms);
/* Statements cancelled after their timeout, since fr_pg_new. */
uint64_t fr_pg_timeouts(const fr_pg_t *pg);
FR_MUST_CHECK int fr_pg_start(fr_pg_t *pg);
bool fr_pg_connected(const fr_pg_t *pg);

/* Queues one statement with text parameters (params[i] NULL = SQL null;
 * lens may be NULL for NUL-terminated values). Returns 0 (cb fires exactly
 * once) or -ENOTCONN / -ESHUTDOWN (cb will NOT fire). Parameters and SQL are
 * copied. The cb never runs before the submitting call returns. Also returns
 * -EINVAL for a NULL sql or a bad nparams (cb will NOT fire). */
FR_MUST_CHECK int fr_pg_query(fr_pg_t *pg, const char *sql, int nparams, const char *const *params, const int *lens,
                              fr_pg_cb cb, void *data);
/* Prepared statements: prepared once per connection (again after a
 * reconnect, transparently) and then executed by name. fr_pg_prepare may be
 * called before fr_pg_start; -EEXIST for a name already registered. A failed
 * prepare is logged and the execs of it then fail with PGRES_FATAL_ERROR.
 * fr_pg_exec returns -ENOENT for a name never registered. */
FR_MUST_CHECK int fr_pg_prepare(fr_pg_t *pg, const char *name, const char *sql, int nparams);
FR_MUST_CHECK int fr_pg_exec(fr_pg_t *pg, const char *name, int nparams, const char *const *params, const int *lens,
                             fr_pg_cb cb, void *data);
/* Runs `copy_sql` (COPY ... FROM STDIN), streams data[0..len) (copied), ends
 * the copy and completes with the COPY's final result. */
FR_MUST_CHECK int fr_pg_copy_in(fr_pg_t *pg, const char *copy_sql, const char *data, size_t len, fr_pg_cb cb,
                                void *cbdata);
/* Produces the next part of a streamed COPY's data: appends it to `out`
 * (empty on entry; a part of a few hundred KB keeps both sides busy) and
 * returns 1 when more follows, 0 with the last part (which may be empty),
 * < 0 to abort: the COPY is then ended with an error and completes with the
 * server's error result. Called from the client's I/O as the connection
 * takes the previous part, one part a loop turn (the loop runs between
 * parts); never after the operation completed. */
typedef int (*fr_pg_copy_fill)(void *data, struct fr_buf *out);
/* Runs `copy_sql` (COPY ... FROM STDIN) with its data from `fill`, part by
 * part, so the server parses one part while the caller produces the next
 * and no whole copy of the data is held; completes like fr_pg_copy_in. */
FR_MUST_CHECK int fr_pg_copy_in_stream(fr_pg_t *pg, const char *copy_sql, fr_pg_copy_fill fill, void *fill_data,
                                       fr_pg_cb cb, void *cbdata);
size_t fr_pg_pending(const fr_pg_t *pg);

/* Stops reconnecting, completes pending operations with NULL, closes;
 * `cb` fires once closed, after which the client is freed. */
void fr_pg_close(fr_pg_t *pg, void (*cb)(void *data), void *data);

#endif
