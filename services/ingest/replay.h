/* replay: `freshet-ingest replay PIPELINE [--dataset D | --source S]
 * [--from DATE --to DATE]`: re-parses the raw payloads landed under
 * {FRESHET_DATA_DIR}/landing/{pipeline}/{source}/{date}/ (files of file
 * sources, JSON responses of http_json sources with their .meta.json
 * sidecar) with the current config and publishes them again with NEW batch
 * ids ("r{ulid}-{file}-{chunk}"), so the loader applies them: keyed
 * datasets converge to the same contents, append-only ones get the rows
 * again (truncate first). Progress on stderr. Internal to freshet-ingest;
 * loop thread only. */
#ifndef FR_INGEST_REPLAY_H
#define FR_INGEST_REPLAY_H

#include <stdbool.h>

#include "app.h"
#include "publish.h"

typedef struct fr_replay fr_replay_t;

/* Lists the payloads (blocking readdir: a one-shot command) and starts.
 * dataset/source/from/to may be NULL (from/to: YYYY-MM-DD, inclusive, on
 * the landing date folder). done(ok) fires once. NULL + err on bad args. */
fr_replay_t *fr_replay_start(struct fr_app *app, fr_publisher_t *pub, const char *pipeline, const char *dataset,
                             const char *source, const char *from, const char *to, void (*done)(bool ok, void *data),
                             void *data, char err[FR_ERR_LEN]);
/* The publisher has room again. */
void fr_replay_pump(fr_replay_t *r);
/* Stops after the file being parsed; cb once nothing is in flight. */
void fr_replay_stop(fr_replay_t *r, void (*cb)(void *data), void *data);
void fr_replay_free(fr_replay_t *r);

#endif
