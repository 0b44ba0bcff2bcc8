/* util: allocation with one out-of-memory policy, a bounded growable byte
 * buffer, JSON string escaping, clocks, ids and checksums shared by every
 * module. Owns nothing global. */
#ifndef FR_UTIL_H
#define FR_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FR_MUST_CHECK                      __attribute__((warn_unused_result))
#define FR_PRINTF(f, a)                    __attribute__((format(printf, f, a)))
#define FR_ERR_LEN                         256
#define FR_ARRAY_LEN(a)                    (sizeof(a) / sizeof((a)[0]))
#define fr_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Allocation: log and abort on out-of-memory, never return NULL. */
void *fr_xmalloc(size_t n);
void *fr_xcalloc(size_t n, size_t size);
void *fr_xrealloc(void *p, size_t n);
char *fr_xstrdup(const char *s);
char *fr_xstrndup(const char *s, size_t n);
/* Copies exactly n bytes (NULs included) and adds a terminating NUL. */
char *fr_xmemdup(const void *p, size_t n);
char *fr_xasprintf(const char *fmt, ...) FR_PRINTF(1, 2);

/* A growable byte buffer. `data` is always NUL-terminated past `len` once
 * anything was appended. `max` (0 = unlimited) caps growth: an append that
 * would pass it fails with -ENOBUFS and leaves the buffer unchanged. */
struct fr_buf {
    char *data; /* owned */
    size_t len; /* bytes used, excluding the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* growth cap in bytes, 0 = none */
};

void fr_buf_init(struct fr_buf *b, size_t max);
void fr_buf_deinit(struct fr_buf *b);
void fr_buf_reset(struct fr_buf *b); /* len = 0, keeps the allocation */
FR_MUST_CHECK int fr_buf_reserve(struct fr_buf *b, size_t extra);
int fr_buf_append(struct fr_buf *b, const void *p, size_t n);
int fr_buf_puts(struct fr_buf *b, const char *s);
int fr_buf_putc(struct fr_buf *b, char c);
int fr_buf_printf(struct fr_buf *b, const char *fmt, ...) FR_PRINTF(2, 3);
int fr_buf_vprintf(struct fr_buf *b, const char *fmt, va_list ap) FR_PRINTF(2, 0);
/* Appends `s[0..n)` as a quoted JSON string ("..." with escapes). Invalid
 * UTF-8 bytes are replaced by U+FFFD. */
int fr_buf_json_str(struct fr_buf *b, const char *s, size_t n);
/* Appends a PostgreSQL identifier, double-quoted ("" for "), a dotted
 * "schema.table" as "schema"."table". For validated config names only. */
void fr_buf_sql_ident(struct fr_buf *b, const char *name);
/* Appends `s[0..n)` as one CSV field (quoted when it holds , " CR or LF). */
int fr_buf_csv_field(struct fr_buf *b, const char *s, size_t n);
/* CSV formula guard (OWASP "CSV injection"): a spreadsheet evaluates a cell
 * that starts with = + - @ TAB or CR as a formula. True when s[0..n) does. */
bool fr_csv_is_formula(const char *s, size_t n);
/* True when values of a PostgreSQL type (a result column's type OID) are
 * free text, so their CSV cells need the guard; false for the typed values
 * freshet writes as they are: numbers (int2/4/8, oid, float4/8, numeric),
 * bool, date, time(tz), timestamp(tz), interval and uuid. */
bool fr_csv_type_is_text(unsigned int pg_type);
/* Appends one CSV cell as fr_buf_csv_field does; with `guard`, a formula
 * (fr_csv_is_formula) is written with a leading ' ("'=1+1"), inside the
 * quotes when it has any. Returns 0 or -ENOBUFS (buffer cap). */
int fr_buf_csv_cell(struct fr_buf *b, const char *s, size_t n, bool guard);
/* The one rule for CSV data cells (api answers and loader exports): a cell
 * of column type pg_type, guarded when the type is text
 * (fr_csv_type_is_text) unless `raw` (the route's or export's csv_raw). */
int fr_buf_csv_value(struct fr_buf *b, const char *s, size_t n, unsigned int pg_type, bool raw);

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 when it is
 * invalid: overlong forms, surrogates and code points past U+10FFFF. */
size_t fr_utf8_seq_len(const unsigned char *s, size_t n);
/* True when s[0..n) is entirely valid UTF-8 (ASCII runs checked 8 bytes at a time). */
bool fr_utf8_valid(const char *s, size_t n);

/* FNV-1a 64-bit with a final mix, so the low bits suit power-of-two tables.
 * Not for untrusted keys where collisions could be chosen at scale. */
uint64_t fr_hash64(const void *p, size_t n);

/* Reconnect backoff: exponential from min_ms to max_ms, each delay
 * jittered into [d/2, d] so a fleet does not reconnect in lockstep. Plain
 * data, embedded in its owner; one per connection. */
struct fr_backoff {
    uint32_t min_ms; /* first delay */
    uint32_t max_ms; /* cap */
    uint32_t cur_ms; /* next delay before jitter */
    uint64_t rng;    /* xorshift64 state, never 0 */
};
void fr_backoff_init(struct fr_backoff *b, uint32_t min_ms, uint32_t max_ms);
/* The delay to wait now; the next one doubles (up to max_ms). */
uint32_t fr_backoff_next(struct fr_backoff *b);
/* After a success: the next failure starts again from min_ms. */
void fr_backoff_reset(struct fr_backoff *b);

/* Clocks. */
uint64_t fr_mono_ms(void); /* monotonic milliseconds */
uint64_t fr_mono_ns(void); /* monotonic nanoseconds */
int64_t fr_wall_us(void);  /* UTC microseconds since the epoch */

/* Time parsing and formatting, UTC everywhere. fr_parse_timestamp accepts
 * ISO-8601 "YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|+HH[:MM]|-HH[:MM]]" and a bare
 * date; no offset means UTC. Returns false on anything else. */
bool fr_parse_timestamp(const char *s, size_t n, int64_t *out_us);
/* Parses "YYYY-MM-DD" into days since 1970-01-01. */
bool fr_parse_date(const char *s, size_t n, int32_t *out_days);
/* Formats as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (fraction omitted when zero);
 * out must hold 32 bytes. Returns the length. */
size_t fr_format_timestamp(int64_t us, char *out);
size_t fr_format_date(int32_t days, char *out); /* "YYYY-MM-DD", 11 bytes */
int64_t fr_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Strict number parsing of the whole of s[0..n): no spaces, no trailing junk. */
bool fr_parse_i64(const char *s, size_t n, int64_t *out);
bool fr_parse_double(const char *s, size_t n, double *out); /* finite only */

/* A time-ordered unique id: 26 Crockford base32 chars (48-bit ms time + 80
 * random bits, like a ULID) and a NUL; out must hold 27 bytes. */
void fr_ulid(char out[27]);

/* SHA-256 hex digest (64 chars + NUL). */
void fr_sha256_hex(const void *p, size_t n, char out[65]);
struct fr_sha256 {
    void *ctx; /* owned: EVP_MD_CTX */
};
void fr_sha256_init(struct fr_sha256 *s);
void fr_sha256_update(struct fr_sha256 *s, const void *p, size_t n);
void fr_sha256_final(struct fr_sha256 *s, char out[65]); /* also frees ctx */

/* Reads a whole file (blocking: startup and worker threads only). Returns
 * NULL and fills err on failure; *len gets the size. Caps at max bytes. */
char *fr_read_file(const char *path, size_t max, size_t *len, char err[FR_ERR_LEN]);

/* mkdir -p (blocking: startup and worker threads only). */
int fr_mkdirs(const char *path, unsigned mode);

/* Atomic file writes: the data goes to a temp file with a unique name in the
 * target's directory (".{name}.{random}.tmp", created O_EXCL | O_NOFOLLOW,
 * so concurrent writers never share one and the ingest's scans skip it),
 * which is renamed over the target: readers see the old file or the whole new
 * one, never a part. The temp file is removed on every failure. The final
 * file has exactly `mode` (umask does not apply). Blocking: startup and
 * worker threads only. Durability is chosen by the caller: */
enum fr_write_flags {
    FR_WRITE_FAST = 0,         /* rename only: a crash may lose the new file (never tear it) */
    FR_WRITE_DURABLE = 1 << 0, /* fsync the file, rename, fsync the directory: on disk once 0 is returned */
    FR_WRITE_MKDIRS = 1 << 1,  /* path variants: create missing parent directories (0755) first */
};

/* Writes data[0..len) to path. 0 or a negative errno. */
FR_MUST_CHECK int fr_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, unsigned flags);
/* Same for `name` (no '/') in the directory open as dirfd (borrowed), for
 * callers that hold their directories open (no path lookup on the way). */
FR_MUST_CHECK int fr_write_file_atomicat(int dirfd, const char *name, const void *data, size_t len, unsigned mode,
                                         unsigned flags);

/* The same mechanism for a file written in pieces: open, write to fd, then
 * commit (or abort). Embedded by its owner; commit and abort release it. */
struct fr_atomic_file {
    int dirfd;     /* owned: the target's directory */
    int fd;        /* owned: the temp file, write here; -1 once released */
    char *name;    /* owned: the target's name in dirfd */
    char tmp[256]; /* the temp file's name in dirfd */
    unsigned flags;
};
FR_MUST_CHECK int fr_atomic_file_open(struct fr_atomic_file *f, const char *path, unsigned mode, unsigned flags);
FR_MUST_CHECK int fr_atomic_file_openat(struct fr_atomic_file *f, int dirfd, const char *name, unsigned mode,
                                        unsigned flags);
/* Syncs (FR_WRITE_DURABLE), closes and renames over the target. 0 or a
 * negative errno (the temp file is then removed). */
FR_MUST_CHECK int fr_atomic_file_commit(struct fr_atomic_file *f);
/* Closes and removes the temp file; the target is untouched. */
void fr_atomic_file_abort(struct fr_atomic_file *f);

#endif
