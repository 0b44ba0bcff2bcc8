/* names: the wire contract's names in one place. Every Redis key, stream,
 * consumer group and channel freshet uses is built here, so a reader (or a
 * Redis Cluster hash tag) changes in one file; docs/architecture.md lists
 * each family with its owner and its bound ("Redis keys" table). Builders
 * return heap strings (fr_xasprintf: never NULL) the caller frees. */
#ifndef FR_NAMES_H
#define FR_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Pub/sub channels. */
#define FR_NAMES_EVENTS  "fr:events"  /* JSON events, any subscriber */
#define FR_NAMES_CONTROL "fr:control" /* commands to ingest ({"cmd":"run",...}) */
/* The consumer group every loader joins on every batch stream. */
#define FR_NAMES_GROUP "loader"

/* "fr:stream:{qname}": a dataset's batches (qname = "{pipeline}.{dataset}"). */
char *fr_names_stream(const char *qname);
/* "fr:dlq:{qname}": a dataset's dead letters (rows and batches, with reasons). */
char *fr_names_dlq(const char *qname);
/* "fr:batch:{id}": where the api recorded a pushed batch (TTL). */
char *fr_names_batch(const char *batch_id);
/* "{cache}:{key}": one cache entry (hash or JSON string). */
char *fr_names_cache(const char *cache, const char *key);

/* The qname of a stream or dlq key ("fr:stream:a.b" -> "a.b"), borrowed from
 * `key`, or NULL when `key` is not of that family. */
const char *fr_names_stream_qname(const char *key);
const char *fr_names_dlq_qname(const char *key);

/* "fr:idem:{caller}:{key}": the api's record of a write sent with an
 * Idempotency-Key (caller and key are hex digests: bounded, no ':'). */
char *fr_names_idem(const char *caller, const char *key);
/* "fr:idseq:{qname}": the last id the api handed out for rows created
 * without one (crud POST). */
char *fr_names_idseq(const char *qname);

/* "fr:lease:dlq:{qname}": which loader bounds (archives and trims) a
 * dataset's dead letters now; a string with a TTL (PX), value = consumer. */
char *fr_names_dlq_lease(const char *qname);

/* An http_json source's lease, fence and state (src_qname =
 * "{pipeline}.{source}"; docs/sources.md "Replicas"):
 * "fr:lease:src:{src_qname}": which ingest runs the source now; a string
 * "{holder}/{token}" with a TTL (PX), renewed by its holder.
 * "fr:fence:src:{src_qname}": counter (INCR) giving each acquisition its
 * fencing token.
 * "fr:state:src:{src_qname}": the source's state (JSON, state.h). */
char *fr_names_src_lease(const char *src_qname);
char *fr_names_src_fence(const char *src_qname);
char *fr_names_src_state(const char *src_qname);

#endif
