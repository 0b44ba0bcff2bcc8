/* filesrc: one `file` source of a pipeline: watches its inbound directory
 * (inotify through uv_fs_event plus a periodic rescan), claims files by
 * renaming them into .processing/{ulid}-NAME, lands and parses each one on
 * a worker thread into a bounded queue of batches and rejected rows, hands
 * them in order to the publisher, and moves the file to done/ or rejected/
 * once Redis has accepted everything. Internal to freshet-ingest. All
 * functions are loop thread only. */
#ifndef FR_INGEST_FILESRC_H
#define FR_INGEST_FILESRC_H

#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "config.h"
#include "publish.h"

#define FR_FILESRC_MAX_JOBS  2 /* files processed at once per source */
#define FR_FILESRC_QUEUE_CAP 4 /* items a worker may queue ahead of the loop */

typedef struct fr_filesrc fr_filesrc_t;

/* Creates the source and its directories (blocking mkdir: startup only):
 * inbound dir, its done/, rejected/ and .processing/, and the landing dir.
 * `p`, `src`, `pub` and `wake` are borrowed and must outlive the source;
 * `wake` is a uv_async_t the workers signal when they queued something: its
 * callback must call fr_filesrc_pump on every source. NULL + err on failure. */
fr_filesrc_t *fr_filesrc_new(struct fr_app *app, const struct fr_pipeline *p, const struct fr_source *src,
                             fr_publisher_t *pub, uv_async_t *wake, char err[FR_ERR_LEN]);
/* Starts watching; files left in .processing/ by a crash are resumed first
 * (same ulid, so the same batch ids), then whatever waits in the inbox. */
FR_MUST_CHECK int fr_filesrc_start(fr_filesrc_t *fs);
/* Moves items the workers queued to the publisher while it has room, and
 * completes files whose items are all acknowledged. Call on wake-ups and
 * when the publisher has room again. */
void fr_filesrc_pump(fr_filesrc_t *fs);
/* Drain: stops watching and claiming, tells workers to stop at the next
 * batch boundary (a file cut short stays in .processing/ and is resumed on
 * the next start), waits for them and for the items of theirs still in the
 * publisher, closes the handles, then calls cb once. Idempotent. */
void fr_filesrc_stop(fr_filesrc_t *fs, void (*cb)(void *data), void *data);
/* Frees a stopped source (after its stop cb fired) or one never started. */
void fr_filesrc_free(fr_filesrc_t *fs);

#endif
