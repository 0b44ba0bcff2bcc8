/* names: the wire contract's names in one place. Every Redis key, stream,
 * consumer group and channel freshet uses is built here, so a reader (or a
 * Redis Cluster hash tag) changes in one file; docs/architecture.md lists
 * each family with its owner, its bound and its hash tag ("Redis keys"
 * table). Builders return heap strings (fr_xasprintf: never NULL) the caller
 * frees.
 *
 * Hash tags (Redis Cluster: only the bytes between the first '{' and the
 * next '}' choose a key's slot): the keys one command touches together share
 * a tag, so every multi-key command (EVAL, MULTI/EXEC) stays in one slot. A
 * dataset's stream, its dead letters, its dead-letter lease, its id sequence
 * and the lease/fence/state of the http_json source that feeds it carry the
 * dataset's qname as their tag ("fr:stream:{players.events}"); the braces
 * are part of the key. Keys always used alone (cache entries, batch records,
 * idempotency records) carry no tag and spread over the cluster. */
#ifndef FR_NAMES_H
#define FR_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pub/sub channels (classic pub/sub: a PUBLISH on any node of a cluster
 * reaches the subscribers of every node). */
#define FR_NAMES_EVENTS  "fr:events"  /* JSON events, any subscriber */
#define FR_NAMES_CONTROL "fr:control" /* commands to ingest ({"cmd":"run",...}) */
/* The consumer group every loader joins on every batch stream. */
#define FR_NAMES_GROUP "loader"

/* "fr:stream:{qname}" (braces included): a dataset's batches
 * (qname = "{pipeline}.{dataset}", e.g. fr:stream:{players.events}). */
char *fr_names_stream(const char *qname);
/* Partition `part` of a dataset's batch stream (docs/scaling.md "Partitioned
 * streams"): partition 0 is fr_names_stream(qname), partition i > 0 is
 * "fr:stream:{qname/i}", its own hash tag, so each partition has its own
 * slot. */
char *fr_names_stream_part(const char *qname, unsigned part);
/* The partition (0..n-1) of a batch keyed by `key` (a file source's inbound
 * file name): FNV-1a 64 of the bytes, mod n; 0 when n <= 1. Stable across
 * versions and hosts. */
unsigned fr_names_partition(const char *key, size_t len, unsigned n);
/* "fr:dlq:{qname}": a dataset's dead letters (rows and batches, with
 * reasons); same slot as its stream. */
char *fr_names_dlq(const char *qname);
/* "fr:batch:ID": where the api recorded a pushed batch (TTL). No tag. */
char *fr_names_batch(const char *batch_id);
/* "CACHE:KEY": one cache entry (hash or JSON string). No tag: cache keys
 * spread over the cluster (a KEY that itself holds "{..}" is tagged by it,
 * which only chooses its slot). fr_names_cache(cache, "*") is the SCAN
 * pattern of one cache. */
char *fr_names_cache(const char *cache, const char *key);

/* "fr:cachefields:CACHE": the fields a hash cache's keys were last fully
 * written with (the model's column names, comma-separated), set by the
 * loader after a full resync. While it equals the model's columns, a row
 * with every column set may be written by one HSET (it overwrites every
 * field a key can have); otherwise each key is deleted and written again.
 * No tag; one per hash cache. */
char *fr_names_cache_fields(const char *cache);

/* The qname of a stream or dlq key ("fr:stream:{a.b}" -> "a.b"), a heap
 * string, or NULL when `key` is not of that family. */
char *fr_names_stream_qname(const char *key);
char *fr_names_dlq_qname(const char *key);

/* "fr:idem:CALLER:KEY": the api's record of a write sent with an
 * Idempotency-Key (caller and key are hex digests: bounded, no ':', no
 * braces). No tag. */
char *fr_names_idem(const char *caller, const char *key);
/* "fr:idseq:{qname}": the last id the api handed out for rows created
 * without one (crud POST). */
char *fr_names_idseq(const char *qname);
/* "fr:ryw:CALLER": read-your-writes across api processes, a hash (p: the
 * caller's writes in flight, l: the primary's WAL position after its last
 * answered write, 16 hex digits). CALLER as fr_readpool_caller builds it
 * ("k:DIGEST" or "ip:ADDRESS"); a brace in it becomes '_': no tag. */
char *fr_names_ryw(const char *caller);

/* "fr:lease:dlq:{qname}": which loader bounds (archives and trims) a
 * dataset's dead letters now; a string with a TTL (PX), value = consumer. */
char *fr_names_dlq_lease(const char *qname);

/* An http_json source's lease, fence and state (src_qname =
 * "{pipeline}.{source}", ds_qname = the qname of the dataset it feeds;
 * docs/sources.md "Replicas"). Tagged with the dataset, so the fenced XADD
 * (lease + stream) and the acquisition (lease + fence + state) each touch
 * one slot:
 * "fr:lease:src:{ds_qname}:src_qname": which ingest runs the source now; a
 * string "{holder}/{token}" with a TTL (PX), renewed by its holder.
 * "fr:fence:src:{ds_qname}:src_qname": counter (INCR) giving each
 * acquisition its fencing token.
 * "fr:state:src:{ds_qname}:src_qname": the source's state (JSON, state.h). */
char *fr_names_src_lease(const char *ds_qname, const char *src_qname);
char *fr_names_src_fence(const char *ds_qname, const char *src_qname);
char *fr_names_src_state(const char *ds_qname, const char *src_qname);

/* The names freshet used before hash tags ("fr:stream:players.events",
 * "fr:dlq:players.events"): only to find what an older version left behind
 * (docs/architecture.md "Redis keys": streams are drained before the upgrade). */
char *fr_names_legacy_stream(const char *qname);
char *fr_names_legacy_dlq(const char *qname);

/* The change feed (GET /v1/changes; docs/status.md): "fr:changes", a
 * stream the loader appends to (XADD ... MAXLEN ~ FR_NAMES_CHANGES_MAXLEN)
 * just before it publishes a batch.loaded, model.refreshed or
 * cache.refreshed event, so its entry ids order the changes and a reader
 * resumes after an id without a gap. An entry has two fields:
 * FR_NAMES_CHANGE_TYPE (the event's "type") and FR_NAMES_CHANGE_EVENT (the
 * event's JSON, as published). No tag: one key, always used alone. */
#define FR_NAMES_CHANGES        "fr:changes"
#define FR_NAMES_CHANGES_MAXLEN 10000 /* entries kept, about (XADD MAXLEN ~) */
#define FR_NAMES_CHANGE_TYPE    "type"
#define FR_NAMES_CHANGE_EVENT   "event"
/* True when an event of this "type" goes on the change feed. */
bool fr_names_is_change(const char *type);
/* The "type" of an event JSON written by freshet (it starts with
 * {"type":"...",), copied into type[cap]; false when json does not start
 * that way or the type does not fit. */
bool fr_names_event_type(const char *json, size_t len, char *type, size_t cap);

/* Daemon status (GET /v1/status): each ingest and loader instance writes
 * "fr:status:{daemon}:{instance}" (no hash tag: used alone), a JSON string
 * with a TTL (SET PX FR_NAMES_STATUS_TTL_MS, rewritten every
 * FR_NAMES_STATUS_EVERY_MS), and lists it in FR_NAMES_STATUS_INDEX, a
 * sorted set (member = the status key, score = its expiry, unix ms) whose
 * expired members every writer removes (ZREMRANGEBYSCORE) and which
 * expires itself when no writer is left. daemon is "ingest" or "loader";
 * instance is "{host}:{pid}" (no '{' or '}'). */
#define FR_NAMES_STATUS_INDEX    "fr:status:instances"
#define FR_NAMES_STATUS_TTL_MS   15000u
#define FR_NAMES_STATUS_EVERY_MS 5000u
char *fr_names_status(const char *daemon, const char *instance);
/* The daemon part of a status key ("fr:status:loader:h:1" -> "loader"),
 * copied into out[cap]; false when key is not a status key. */
bool fr_names_status_daemon(const char *key, char *out, size_t cap);

/* The api's route.stale event on fr:events (JSON, heap): a route with a
 * max_age answered data last refreshed `age_s` seconds ago, at
 * `refreshed_at` (ISO-8601 UTC): {"type":"route.stale","ts":...,
 * "pipeline","route","path","age_s","max_age_s","refreshed_at"}. */
char *fr_names_event_route_stale(const char *pipeline, const char *route, const char *path, int64_t age_s,
                                 uint32_t max_age_s, const char *refreshed_at);

/* A backfill started from the api (POST /admin/backfills; docs/console.md):
 * "fr:backfill:ID" (no tag: used alone), a hash with a TTL of
 * FR_NAMES_BACKFILL_TTL_S, rewritten on every update. The api creates it
 * (state queued, pipeline, source, from, to) and asks on FR_NAMES_CONTROL
 * with {"cmd":"backfill","id","pipeline","source","from_us","to_us"}; the
 * one ingest that claims it (HSETNX holder) runs it and writes state
 * (queued, waiting, running, done, failed), windows_done, windows_total,
 * rows, rejected, requests, reason, updated_at (unix ms). ID is a ULID. */
#define FR_NAMES_BACKFILL_TTL_S 86400
char *fr_names_backfill(const char *id);

/* The loader's model.test_failed event on fr:events (JSON, heap): a
 * refresh of `model` was not applied because rows failed its data tests:
 * {"type":"model.test_failed","ts":...,"pipeline","model","tests":[names],
 * "keys":[the failing rows' keys],"rows":n} (`rows` counts the failing rows
 * found, up to the query's limit; keys and tests are distinct). */
char *fr_names_event_model_test_failed(const char *pipeline, const char *model, const char *const *tests,
                                       size_t n_tests, const char *const *keys, size_t n_keys, size_t rows);

#endif
