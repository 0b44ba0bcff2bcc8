/* filesrc: a `file` source. The loop thread watches the inbound directory,
 * picks files and hands each to a worker (uv_queue_work) that claims it
 * (rename into .processing/{ulid}-NAME), lands a copy with its SHA-256, and
 * parses it into batches and rejected rows pushed to a small bounded queue;
 * the loop moves queued items to the publisher in order and, once Redis
 * accepted them all, moves the file to done/ or rejected/ (another worker:
 * renames are blocking I/O). Inbox entries are untrusted (docs/security.md):
 * only a regular file with one link, opened O_NOFOLLOW and no larger than
 * max_file_bytes, is read, and every claim and move is relative to the
 * working directories opened at start. Owns its jobs, watcher, timer, scan
 * request and those directory descriptors. */
#include "filesrc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "batcher.h"
#include "log.h"
#include "names.h"
#include "parse.h"

#define IO_CHUNK        (256u * 1024u) /* read size for landing and parsing */
#define SETTLE_MS       200            /* a file found by a scan and modified more recently is left for later */
#define MAX_COMPLETE    4096           /* names inotify reported complete, not yet claimed */
#define RECHECK_MS      100            /* rescan delay after a file was not ready */
#define FAILED_RETRY_MS 5000           /* a file that failed on our side is retried after this */
#define MAX_NAME        200            /* longest inbound file name we claim */
#define MAX_IGNORED     256            /* names remembered as not ours to process */
#define ULID_LEN        26

enum job_outcome {
    OUT_NONE = 0,
    OUT_GONE,     /* vanished before the claim: nothing to do */
    OUT_IGNORED,  /* not a regular file: leave it alone from now on */
    OUT_DEFERRED, /* still being written: look again soon */
    OUT_DONE,     /* at least one good row published: to done/ */
    OUT_REJECTED, /* no loadable row: to rejected/ with reason */
    OUT_STOPPED,  /* daemon stopping: left in .processing/ for the next start */
    OUT_FAILED,   /* our side failed (disk, memory): left in .processing/, retried */
};

struct job {
    fr_filesrc_t *fs;        /* borrowed back pointer */
    char *name;              /* owned: inbound file name */
    char ulid[ULID_LEN + 1]; /* the claim's ulid: prefix of every batch id */
    bool resume;             /* already in .processing/ (crash recovery) */
    bool complete;           /* inotify saw it closed after writing or renamed in: no settle wait */
    uint64_t t0_ms;          /* monotonic start */
    uv_work_t work;          /* processing worker */
    uv_work_t fin;           /* final rename worker */
    bool worker_done;        /* after_work ran */
    bool finishing;          /* fin queued */
    bool lost;               /* an item was dropped (stopping): the file is not finished */
    bool claimed;            /* worker: the file is in .processing/ (set before after_work) */
    int lock_fd;             /* worker, then the loop until job_free: holds the claimed file's flock, or -1 */
    /* Written by the worker, read by the loop after after_work. */
    enum job_outcome outcome;
    char reason[FR_ERR_LEN];
    uint64_t rows_ok;
    uint64_t rows_rejected;
    uint64_t batches;
    uint64_t bytes;                              /* raw file size */
    struct fr_drift_tally drift[FR_DRIFT_KINDS]; /* schema drift seen, announced when the file is finished */
    /* Written by the fin worker. */
    char *final_name; /* owned: name inside done/ or rejected/ */
    int fin_err;      /* errno of a failed rename, 0 = ok */
    /* The queue shared with the worker (mu guards q*, stop). */
    uv_mutex_t mu;
    uv_cond_t cond;
    struct fr_pub_item *qhead; /* owned */
    struct fr_pub_item *qtail;
    size_t qlen;
    bool stop;
    /* Loop side. */
    size_t outstanding; /* items in the publisher, not yet done */
    struct job *next;
};

struct fr_filesrc {
    struct fr_app *app;           /* borrowed */
    const struct fr_pipeline *pl; /* borrowed */
    const struct fr_source *src;  /* borrowed */
    const struct fr_dataset *ds;  /* borrowed */
    fr_publisher_t *pub;          /* borrowed */
    uv_async_t *wake;             /* borrowed: workers signal it */
    char *label;                  /* owned: "pipeline.source" for logs */
    char *inbound;                /* owned: data_dir/dir */
    char *processing;             /* owned: inbound/.processing */
    char *done;                   /* owned: inbound/done */
    char *rejected;               /* owned: inbound/rejected */
    char *landing;                /* owned: data_dir/landing/{pipeline}/{source} */
    char *landing_rel;            /* owned: landing/{pipeline}/{source} */
    int inbound_fd;               /* owned: the inbound dir (O_DIRECTORY), -1 = none */
    int processing_fd;            /* owned: .processing/, opened O_NOFOLLOW: claims work relative to it */
    int done_fd;                  /* owned: done/, likewise */
    int rejected_fd;              /* owned: rejected/, likewise */
    uv_poll_t watch;              /* embedded: on ino_fd */
    int ino_fd;                   /* owned: inotify (IN_CLOSE_WRITE | IN_MOVED_TO), -1 = none */
    char **complete;              /* owned: names reported complete, claimed without settling */
    size_t n_complete;
    uv_timer_t timer; /* embedded: rescan + deferred kicks */
    bool watch_init;
    bool timer_init;
    int open_handles; /* initialised handles not yet closed */
    uv_fs_t scan_req; /* embedded */
    bool scanning;
    bool rescan;      /* a scan was asked for while one ran */
    struct job *jobs; /* owned */
    size_t n_jobs;
    char **resume; /* owned: .processing names to (re)process first */
    size_t n_resume;
    uint64_t resume_after_ms; /* monotonic: don't retry failed files before */
    char **ignored;           /* owned: names not to look at again */
    size_t n_ignored;
    bool started;
    bool stopping;
    bool stop_fired;
    void (*stop_cb)(void *data);
    void *stop_data;        /* borrowed */
    uint64_t *m_files_done; /* borrowed from app->metrics */
    uint64_t *m_files_rejected;
    uint64_t *m_bytes;
    int64_t *m_queue_depth;
};

static void job_check(struct job *j);
static void kick(fr_filesrc_t *fs, uint64_t delay_ms);

/* ================================================================= helpers */

static bool ulid_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U');
}

/* ".processing" entries are "{ulid}-NAME". */
static bool split_processing_name(const char *s, char ulid[ULID_LEN + 1], const char **name)
{
    if (strlen(s) < ULID_LEN + 2 || s[ULID_LEN] != '-')
        return false;
    for (int i = 0; i < ULID_LEN; i++)
        if (!ulid_char(s[i]))
            return false;
    memcpy(ulid, s, ULID_LEN);
    ulid[ULID_LEN] = '\0';
    *name = s + ULID_LEN + 1;
    return true;
}

/* The UTC day of a ulid's timestamp, so a resumed file lands at the same
 * path as its first attempt. */
static void ulid_date(const char *ulid, char out[11])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t ms = 0;

    for (int i = 0; i < 10; i++) {
        const char *p = strchr(alphabet, ulid[i]);
        ms = (ms << 5) | (uint64_t)(p ? p - alphabet : 0);
    }
    fr_format_date((int32_t)(ms / 86400000u), out);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Names a writer is probably still producing (or that are not data). */
static bool skip_name(const char *name)
{
    return name[0] == '.' || has_suffix(name, ".tmp") || has_suffix(name, ".part") || has_suffix(name, ".partial") ||
           has_suffix(name, "~");
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static ssize_t read_some(int fd, char *p, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -errno : r;
    }
}

/* ================================================================= worker */

static bool job_stopping(struct job *j)
{
    bool s;

    uv_mutex_lock(&j->mu);
    s = j->stop;
    uv_mutex_unlock(&j->mu);
    return s;
}

/* Queues one item for the loop, blocking while the queue is full
 * (backpressure). -ECANCELED (item freed) when the daemon is stopping. */
static int push(struct job *j, struct fr_pub_item *it)
{
    uv_mutex_lock(&j->mu);
    while (j->qlen >= FR_FILESRC_QUEUE_CAP && !j->stop)
        uv_cond_wait(&j->cond, &j->mu);
    if (j->stop) {
        uv_mutex_unlock(&j->mu);
        fr_pub_item_free(it);
        return -ECANCELED;
    }
    it->next = NULL;
    if (j->qtail)
        j->qtail->next = it;
    else
        j->qhead = it;
    j->qtail = it;
    j->qlen++;
    uv_mutex_unlock(&j->mu);
    uv_async_send(j->fs->wake);
    return 0;
}

/* State of one file's parse, on the worker's stack. */
struct wctx {
    struct job *j;
    fr_batcher_t *batcher; /* owned */
    struct fr_raw_ref raw; /* borrowed strings */
    int err;               /* first internal error */
};

/* A packed batch from the batcher, onto the job's queue. */
static int emit_batch(void *data, struct fr_pub_item *it)
{
    struct wctx *w = data;
    int rc = push(w->j, it);
    if (rc == 0)
        w->j->batches++;
    return rc;
}

/* The batcher's error into the job's reason, when packing failed. */
static int batch_error(struct wctx *w, int rc)
{
    const char *e = fr_batcher_error(w->batcher);
    if (rc != 0 && e[0]) {
        snprintf(w->j->reason, sizeof(w->j->reason), "%s", e);
        w->err = rc;
    }
    return rc;
}

static int on_row(void *data, const struct fr_row *row)
{
    struct wctx *w = data;

    w->j->rows_ok++;
    return batch_error(w, fr_batcher_add(w->batcher, row));
}

_Static_assert(FR_SOURCE_MAX_BATCH_BYTES + 2 * FR_PARSE_MAX_LINE <= FR_BATCH_MAX_BYTES,
               "a full batch plus one more row must fit what the codec accepts");

static int push_reject(struct job *j, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct fr_pub_item *it = fr_pub_item_new(FR_PUB_ROW, j->fs->ds->qname);

    if (raw_len > FR_PUB_RAW_MAX)
        raw_len = FR_PUB_RAW_MAX;
    it->file = fr_xstrdup(j->name);
    it->line = line;
    it->reason = fr_xstrdup(reason);
    it->raw = fr_xmemdup(raw ? raw : "", raw ? raw_len : 0); /* binary: the row may hold NULs */
    it->raw_len = raw ? raw_len : 0;
    return push(j, it);
}

static int on_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct wctx *w = data;

    w->j->rows_rejected++;
    return push_reject(w->j, line, reason, raw, raw_len);
}

static void set_outcome(struct job *j, enum job_outcome o, const char *fmt, ...) FR_PRINTF(3, 4);
static void set_outcome(struct job *j, enum job_outcome o, const char *fmt, ...)
{
    va_list ap;

    j->outcome = o;
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(j->reason, sizeof(j->reason), fmt, ap);
        va_end(ap);
    }
}

/* The sidecar's line in GNU coreutils' format, so `sha256sum -c` verifies
 * it: "<hex>  <name>\n"; a name holding a backslash, a newline or a carriage
 * return is written escaped (\\, \n, \r) on a line that starts with a
 * backslash, as sha256sum itself writes it. Owned by the caller. */
static char *sidecar_line(const char sha[65], const char *name)
{
    struct fr_buf b;
    bool esc = strpbrk(name, "\\\n\r") != NULL;

    fr_buf_init(&b, 0);
    if (esc)
        (void)fr_buf_putc(&b, '\\');
    (void)fr_buf_printf(&b, "%s  ", sha);
    for (const char *c = name; *c; c++) {
        if (esc && (*c == '\\' || *c == '\n' || *c == '\r'))
            (void)fr_buf_puts(&b, *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" : "\\r");
        else
            (void)fr_buf_putc(&b, *c);
    }
    (void)fr_buf_putc(&b, '\n');
    return b.data; /* fr_buf data is malloc'ed and NUL-terminated */
}

/* Copies the claimed file, read from its descriptor `in` (borrowed), to the
 * landing zone (fr_atomic_file, durable: the inbox copy moves to done/ and
 * may be deleted; mode 0640: the copy is not world-readable) while hashing
 * it, and writes the sidecar (sidecar_line; atomic, not synced: it can be
 * computed again from the copy). Fills sha and size. A file that grows past the
 * source's max_file_bytes while it is copied is rejected. Returns 0, or sets
 * the outcome (REJECTED: unreadable or too big; FAILED: our side; STOPPED)
 * and returns -1. */
static int land(struct job *j, int in, const char *land_path, const char *land_name, char sha[65])
{
    struct fr_sha256 h;
    struct fr_atomic_file out;
    char *side = fr_xasprintf("%s.sha256", land_path);
    char *buf = fr_xmalloc(IO_CHUNK);
    char *line;
    const uint64_t max = j->fs->src->max_file_bytes;
    int rc = -1, e;
    ssize_t n;

    fr_sha256_init(&h);
    e = fr_atomic_file_open(&out, land_path, 0640, FR_WRITE_DURABLE);
    if (e != 0) {
        set_outcome(j, OUT_FAILED, "cannot write landing copy %s: %s", land_path, strerror(-e));
        goto out_hash;
    }
    j->bytes = 0;
    for (;;) {
        if (job_stopping(j)) {
            set_outcome(j, OUT_STOPPED, NULL);
            goto out_unlink;
        }
        n = read_some(in, buf, IO_CHUNK);
        if (n < 0) {
            set_outcome(j, OUT_REJECTED, "unreadable: %s", strerror((int)-n));
            goto out_unlink;
        }
        if (n == 0)
            break;
        if (max && j->bytes + (uint64_t)n > max) {
            set_outcome(j, OUT_REJECTED,
                        "file grew past %" PRIu64 " bytes while it was read: over max_file_bytes %" PRIu64
                        " of source %s",
                        j->bytes + (uint64_t)n, max, j->fs->src->name);
            goto out_unlink;
        }
        fr_sha256_update(&h, buf, (size_t)n);
        e = write_all(out.fd, buf, (size_t)n);
        if (e != 0) {
            set_outcome(j, OUT_FAILED, "cannot write landing copy %s: %s", land_path, strerror(-e));
            goto out_unlink;
        }
        j->bytes += (uint64_t)n;
    }
    e = fr_atomic_file_commit(&out); /* releases out, also on failure */
    if (e != 0) {
        set_outcome(j, OUT_FAILED, "cannot write landing copy %s: %s", land_path, strerror(-e));
        goto out_hash;
    }
    fr_sha256_final(&h, sha);
    h.ctx = NULL;
    line = sidecar_line(sha, land_name);
    e = fr_write_file_atomic(side, line, strlen(line), 0644, FR_WRITE_FAST);
    free(line);
    if (e != 0) {
        set_outcome(j, OUT_FAILED, "cannot write %s: %s", side, strerror(-e));
        goto out_hash;
    }
    rc = 0;
    goto out_hash;

out_unlink:
    fr_atomic_file_abort(&out);
out_hash:
    if (h.ctx) {
        char scratch[65];
        fr_sha256_final(&h, scratch); /* frees the context */
    }
    free(buf);
    free(side);
    return rc;
}

/* The checking pass: keeps the last rejected record (a drift `fail`
 * reports its record through on_reject right before stopping). */
struct check_ctx {
    uint32_t line;
    char reason[FR_ERR_LEN];
    char *raw; /* owned, <= FR_PUB_RAW_MAX bytes */
    size_t raw_len;
};

static int on_check_reject(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    struct check_ctx *c = data;

    if (raw_len > FR_PUB_RAW_MAX)
        raw_len = FR_PUB_RAW_MAX;
    c->line = line;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    free(c->raw);
    c->raw = fr_xmemdup(raw ? raw : "", raw ? raw_len : 0);
    c->raw_len = raw ? raw_len : 0;
    return 0;
}

/* A dataset whose drift policy has a `fail` action must not publish a row
 * of a file that fails later on: parse the landing copy once without output
 * first. Returns 1 when the file fails (outcome REJECTED, the failing
 * record queued as a dead letter, tallies kept), 0 to go on, -1 when the
 * outcome was set otherwise (stopping, our side failed). */
static int check_drift(struct job *j, enum fr_file_format fmt, const char *land_path)
{
    fr_filesrc_t *fs = j->fs;
    struct check_ctx c;
    fr_parser_t *parser;
    char *buf;
    ssize_t n;
    int fd, rc = 0, ret = 0;

    memset(&c, 0, sizeof(c));
    fd = open(land_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_outcome(j, OUT_FAILED, "cannot open landing copy %s: %s", land_path, strerror(errno));
        return -1;
    }
    parser = fr_parser_new(fs->ds, fmt, fs->src->csv_header, NULL, on_check_reject, &c);
    buf = fr_xmalloc(IO_CHUNK);
    for (;;) {
        if (job_stopping(j)) {
            set_outcome(j, OUT_STOPPED, NULL);
            ret = -1;
            break;
        }
        n = read_some(fd, buf, IO_CHUNK);
        if (n < 0) {
            set_outcome(j, OUT_FAILED, "cannot read landing copy %s: %s", land_path, strerror((int)-n));
            ret = -1;
            break;
        }
        rc = n == 0 ? fr_parser_finish(parser) : fr_parser_feed(parser, buf, (size_t)n);
        if (rc != 0 || n == 0)
            break;
    }
    if (ret == 0 && rc != 0 && fr_parser_drift_failed(parser)) {
        for (int k = 0; k < FR_DRIFT_KINDS; k++)
            j->drift[k] = *fr_parser_drift(parser, (enum fr_drift_kind)k);
        if (push_reject(j, c.line, c.reason, c.raw, c.raw_len) != 0) {
            set_outcome(j, OUT_STOPPED, NULL);
            ret = -1;
        } else {
            j->rows_rejected++;
            set_outcome(j, OUT_REJECTED, "%s", fr_parser_error(parser));
            ret = 1;
        }
    }
    free(buf);
    free(c.raw);
    fr_parser_free(parser);
    close(fd);
    return ret;
}

/* Parses the landing copy into batches and dead letters. */
static void parse_landed(struct job *j, enum fr_file_format fmt, const char *land_path, const char *land_rel,
                         const char *sha)
{
    fr_filesrc_t *fs = j->fs;
    struct wctx w;
    fr_parser_t *parser;
    char *buf;
    const char *fatal = NULL;
    int fd, rc = 0;
    ssize_t n;

    memset(&w, 0, sizeof(w));
    w.j = j;
    w.raw.path = land_rel;
    w.raw.sha256 = sha;
    w.raw.size = j->bytes;

    if (fr_drift_has_fail(&fs->ds->drift) && check_drift(j, fmt, land_path) != 0)
        return;
    fd = open(land_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_outcome(j, OUT_FAILED, "cannot open landing copy %s: %s", land_path, strerror(errno));
        return;
    }
    w.batcher = fr_batcher_new(&(struct fr_batcher_opts){.ds = fs->ds,
                                                         .src = fs->src,
                                                         .id_prefix = j->ulid,
                                                         .id_digits = 6,
                                                         .file_name = j->name,
                                                         .file_rel = land_rel,
                                                         .raw = &w.raw,
                                                         .emit = emit_batch,
                                                         .data = &w});
    parser = fr_parser_new(fs->ds, fmt, fs->src->csv_header, on_row, on_reject, &w);
    if (parser == NULL) {
        set_outcome(j, OUT_FAILED, "cannot create parser");
        goto out;
    }
    buf = fr_xmalloc(IO_CHUNK);
    for (;;) {
        if (job_stopping(j)) {
            rc = -ECANCELED;
            break;
        }
        n = read_some(fd, buf, IO_CHUNK);
        if (n < 0) {
            free(buf);
            set_outcome(j, OUT_FAILED, "cannot read landing copy %s: %s", land_path, strerror((int)-n));
            goto out;
        }
        if (n == 0) {
            rc = fr_parser_finish(parser);
            break;
        }
        rc = fr_parser_feed(parser, buf, (size_t)n);
        if (rc != 0)
            break;
    }
    free(buf);

    if (rc == -EINVAL)
        fatal = fr_parser_error(parser);
    else if (rc == -ECANCELED || (rc != 0 && job_stopping(j))) {
        set_outcome(j, OUT_STOPPED, NULL);
        goto out;
    } else if (rc != 0) {
        if (w.err == 0)
            snprintf(j->reason, sizeof(j->reason), "parse failed: %s", strerror(-rc));
        j->outcome = OUT_FAILED;
        goto out;
    }
    /* EOF (or a fatal format error after good rows): the rest are batches. */
    rc = batch_error(&w, fr_batcher_flush(w.batcher));
    if (rc != 0) {
        if (rc == -ECANCELED)
            set_outcome(j, OUT_STOPPED, NULL);
        else
            j->outcome = OUT_FAILED;
        goto out;
    }
    if (fatal && j->rows_ok > 0) {
        /* Good rows before the error were published: report the rest. */
        rc = push_reject(j, 0, fatal, "", 0);
        if (rc != 0) {
            set_outcome(j, OUT_STOPPED, NULL);
            goto out;
        }
        j->rows_rejected++;
    }
    if (j->rows_ok > 0)
        set_outcome(j, OUT_DONE, NULL);
    else if (fatal)
        set_outcome(j, OUT_REJECTED, "%s", fatal);
    else if (j->rows_rejected > 0)
        set_outcome(j, OUT_REJECTED, "no loadable row: all %" PRIu64 " rows rejected (see fr:dlq:%s)",
                    j->rows_rejected, fs->ds->qname);
    else
        set_outcome(j, OUT_REJECTED, "no loadable row: the file holds no rows");
out:
    for (int k = 0; parser && k < FR_DRIFT_KINDS; k++)
        j->drift[k] = *fr_parser_drift(parser, (enum fr_drift_kind)k);
    fr_parser_free(parser);
    fr_batcher_free(w.batcher);
    close(fd);
}

static void accepted_formats(unsigned f, char *out, size_t n)
{
    snprintf(out, n, "%s%s%s%s%s", (f & FR_FMT_CSV) ? ".csv" : "", (f & FR_FMT_CSV) && (f & ~FR_FMT_CSV) ? ", " : "",
             (f & FR_FMT_NDJSON) ? ".ndjson/.jsonl" : "", (f & FR_FMT_NDJSON) && (f & FR_FMT_JSON) ? ", " : "",
             (f & FR_FMT_JSON) ? ".json" : "");
}

/* What a non-regular inbox entry is, for the rejection reason. */
static const char *file_type_name(mode_t m)
{
    if (S_ISLNK(m))
        return "symbolic link";
    if (S_ISDIR(m))
        return "directory";
    if (S_ISFIFO(m))
        return "FIFO (named pipe)";
    if (S_ISCHR(m))
        return "character device";
    if (S_ISBLK(m))
        return "block device";
    if (S_ISSOCK(m))
        return "socket";
    return "unknown file type";
}

/* done/ and rejected/ live in the inbox and are never claimed. */
static bool workdir_name(const char *name)
{
    return strcmp(name, "done") == 0 || strcmp(name, "rejected") == 0;
}

/* Worker thread: opens the claimed entry `entry` of .processing/ as a
 * regular file with one link, without following a symbolic link and without
 * blocking on a FIFO, and checks its size on that descriptor. Returns the
 * descriptor (the caller reads only from it), or -1 with the outcome set
 * (REJECTED naming the type, the links or the size; FAILED: our side). */
static int open_claimed(struct job *j, const char *entry)
{
    fr_filesrc_t *fs = j->fs;
    const uint64_t max = fs->src->max_file_bytes;
    struct stat st;
    int fd, e;

    /* Classify the entry itself first: a FIFO or a device is never opened. */
    if (fstatat(fs->processing_fd, entry, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        set_outcome(j, OUT_FAILED, "claimed file vanished: %s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_outcome(j, OUT_REJECTED, "not a regular file: %s", file_type_name(st.st_mode));
        return -1;
    }
    fd = openat(fs->processing_fd, entry, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        if (e == ELOOP)
            set_outcome(j, OUT_REJECTED, "not a regular file: symbolic link");
        else
            set_outcome(j, e == ENOENT ? OUT_FAILED : OUT_REJECTED, "unreadable: %s", strerror(e));
        return -1;
    }
    /* The descriptor is what gets read: check it, not the name. */
    if (fstat(fd, &st) < 0) {
        set_outcome(j, OUT_FAILED, "cannot stat the claimed file: %s", strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        set_outcome(j, OUT_REJECTED, "not a regular file: %s", file_type_name(st.st_mode));
        goto out_close;
    }
    if (st.st_nlink != 1) {
        set_outcome(j, OUT_REJECTED, "regular file with %ju hard links: only files with one link are read",
                    (uintmax_t)st.st_nlink);
        goto out_close;
    }
    if (max && (uint64_t)st.st_size > max) {
        set_outcome(j, OUT_REJECTED, "file is %jd bytes: over max_file_bytes %" PRIu64 " of source %s",
                    (intmax_t)st.st_size, max, fs->src->name);
        j->bytes = 0;
        goto out_close;
    }
    return fd;

out_close:
    close(fd);
    return -1;
}

/* Worker thread: claim, land, parse. Touches no loop handle; talks to the
 * loop only through the queue and uv_async_send. Every inbox operation is
 * relative to the working directories opened at start (a symbolic link put
 * in place of one later is not followed). */
/* Worker thread: a claimed file is processed by the daemon holding its
 * flock (on a descriptor kept until the job ends; the kernel releases it
 * when the process dies). Ingests sharing a folder resume .processing/ when
 * they start: one must not take a file another live ingest claimed a moment
 * ago, and a claim a starting ingest locked first is left to it. False with
 * the outcome GONE when another daemon holds it or it left .processing/
 * meanwhile (finished by its holder). A file that cannot be opened here is
 * left to open_claimed's checks (symbolic links, FIFOs, ...). */
static bool lock_claimed(struct job *j, const char *entry)
{
    fr_filesrc_t *fs = j->fs;
    struct stat a, b;
    int fd = openat(fs->processing_fd, entry, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ENOENT && j->resume) {
            set_outcome(j, OUT_GONE, NULL);
            return false;
        }
        return true;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) {
            set_outcome(j, OUT_GONE, NULL);
            return false;
        }
        return true; /* no locks here (some network file systems): as before */
    }
    /* locked: still the entry in .processing/, not a file its holder just moved out? */
    if (fstat(fd, &a) != 0 || fstatat(fs->processing_fd, entry, &b, AT_SYMLINK_NOFOLLOW) != 0 ||
        a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        close(fd);
        set_outcome(j, OUT_GONE, NULL);
        return false;
    }
    j->lock_fd = fd;
    return true;
}

static void work_cb(uv_work_t *req)
{
    struct job *j = fr_container_of(req, struct job, work);
    fr_filesrc_t *fs = j->fs;
    char *entry = fr_xasprintf("%s-%s", j->ulid, j->name);
    char *land_dir = NULL, *land_name = NULL, *land_path = NULL, *land_rel = NULL;
    enum fr_file_format fmt;
    char date[11];
    char sha[65];
    char fmts[64];
    struct stat st;
    int rc, fd = -1;

    if (!j->resume) {
        if (fstatat(fs->inbound_fd, j->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            set_outcome(j, OUT_GONE, NULL);
        } else if (S_ISDIR(st.st_mode) && workdir_name(j->name)) {
            set_outcome(j, OUT_IGNORED, NULL);
        } else {
            int64_t mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000;
            int64_t age_ms = (fr_wall_us() - mtime_us) / 1000;

            /* A file inotify saw complete (closed after writing, or renamed
             * in) is claimed at once; one only found by a scan may still be
             * being written: wait until it has been quiet for SETTLE_MS. */
            if (!j->complete && age_ms > -1000 && age_ms < SETTLE_MS)
                set_outcome(j, OUT_DEFERRED, NULL);
            else if (renameat(fs->inbound_fd, j->name, fs->processing_fd, entry) < 0)
                set_outcome(j, errno == ENOENT ? OUT_GONE : OUT_FAILED, "cannot claim: %s", strerror(errno));
        }
        if (j->outcome != OUT_NONE)
            goto out;
    }
    if (!lock_claimed(j, entry))
        goto out;
    j->claimed = true;

    fd = open_claimed(j, entry);
    if (fd < 0)
        goto out;
    fmt = fr_format_from_name(j->name);
    if (fmt == 0 || !(fmt & fs->src->formats)) {
        accepted_formats(fs->src->formats, fmts, sizeof(fmts));
        set_outcome(j, OUT_REJECTED, "unknown file format: source %s accepts %s files", fs->src->name, fmts);
        goto out;
    }

    ulid_date(j->ulid, date);
    land_dir = fr_xasprintf("%s/%s", fs->landing, date);
    rc = fr_mkdirs(land_dir, 0755);
    if (rc != 0) {
        set_outcome(j, OUT_FAILED, "cannot create %s: %s", land_dir, strerror(-rc));
        goto out;
    }
    land_name = fr_xasprintf("%s-%s", j->ulid, j->name);
    land_path = fr_xasprintf("%s/%s", land_dir, land_name);
    land_rel = fr_xasprintf("%s/%s/%s", fs->landing_rel, date, land_name);
    rc = land(j, fd, land_path, land_name, sha);
    close(fd);
    fd = -1;
    if (rc != 0)
        goto out;
    parse_landed(j, fmt, land_path, land_rel, sha);

out:
    if (fd >= 0)
        close(fd);
    free(land_rel);
    free(land_path);
    free(land_name);
    free(land_dir);
    free(entry);
}

/* Worker thread: the final move of a finished file, plus its reason file,
 * relative to the directories opened at start. */
static void fin_cb(uv_work_t *req)
{
    struct job *j = fr_container_of(req, struct job, fin);
    fr_filesrc_t *fs = j->fs;
    int dirfd = j->outcome == OUT_DONE ? fs->done_fd : fs->rejected_fd;
    char *entry = fr_xasprintf("%s-%s", j->ulid, j->name);
    char *dst = fr_xstrdup(j->name);
    struct stat st;

    if (fstatat(dirfd, dst, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        free(dst);
        dst = fr_xasprintf("%s.%s", j->name, j->ulid);
    }
    j->fin_err = 0;
    if (renameat(fs->processing_fd, entry, dirfd, dst) < 0)
        j->fin_err = errno;
    if (j->fin_err == 0 && j->outcome == OUT_REJECTED) {
        char *rname = fr_xasprintf("%s.reason.txt", dst);
        char *text = fr_xasprintf("%s\n", j->reason);
        /* no fsync: the file's move above is not synced either */
        int rc = fr_write_file_atomicat(dirfd, rname, text, strlen(text), 0644, FR_WRITE_FAST);

        if (rc != 0)
            fr_log_kv(FR_LOG_WARN, "file", j->name, "cannot write %s/%s: %s", fs->rejected, rname, strerror(-rc));
        free(text);
        free(rname);
    }
    j->final_name = dst;
    free(entry);
}

/* =================================================================== loop */

static bool name_active(const fr_filesrc_t *fs, const char *name)
{
    for (const struct job *j = fs->jobs; j; j = j->next)
        if (strcmp(j->name, name) == 0)
            return true;
    return false;
}

static bool name_ignored(const fr_filesrc_t *fs, const char *name)
{
    for (size_t i = 0; i < fs->n_ignored; i++)
        if (strcmp(fs->ignored[i], name) == 0)
            return true;
    return false;
}

static void ignore_name(fr_filesrc_t *fs, const char *name)
{
    if (fs->n_ignored >= MAX_IGNORED || name_ignored(fs, name))
        return;
    fs->ignored = fr_xrealloc(fs->ignored, (fs->n_ignored + 1) * sizeof(*fs->ignored));
    fs->ignored[fs->n_ignored++] = fr_xstrdup(name);
}

static void maybe_stopped(fr_filesrc_t *fs)
{
    if (!fs->stopping || fs->stop_fired || fs->n_jobs > 0 || fs->scanning || fs->open_handles > 0)
        return;
    fs->stop_fired = true;
    if (fs->stop_cb)
        fs->stop_cb(fs->stop_data);
}

static void update_depth(fr_filesrc_t *fs)
{
    int64_t d = 0;

    for (struct job *j = fs->jobs; j; j = j->next) {
        uv_mutex_lock(&j->mu);
        d += (int64_t)j->qlen;
        uv_mutex_unlock(&j->mu);
        d += (int64_t)j->outstanding;
    }
    *fs->m_queue_depth = d;
}

static void job_free(struct job *j)
{
    fr_filesrc_t *fs = j->fs;
    struct job **pp;

    for (pp = &fs->jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    fs->n_jobs--;
    while (j->qhead) {
        struct fr_pub_item *it = j->qhead;
        j->qhead = it->next;
        fr_pub_item_free(it);
    }
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* the file is out of .processing/ (or left there to resume): unlocked */
    uv_cond_destroy(&j->cond);
    uv_mutex_destroy(&j->mu);
    free(j->final_name);
    free(j->name);
    free(j);
    update_depth(fs);
    maybe_stopped(fs);
}

static void after_work_cb(uv_work_t *req, int status);

/* Removes name from the set inotify reported complete; true if it was there. */
static bool take_complete(fr_filesrc_t *fs, const char *name)
{
    for (size_t i = 0; i < fs->n_complete; i++) {
        if (strcmp(fs->complete[i], name) == 0) {
            free(fs->complete[i]);
            fs->complete[i] = fs->complete[--fs->n_complete];
            return true;
        }
    }
    return false;
}

static void add_complete(fr_filesrc_t *fs, const char *name)
{
    for (size_t i = 0; i < fs->n_complete; i++)
        if (strcmp(fs->complete[i], name) == 0)
            return;
    if (fs->n_complete == MAX_COMPLETE) { /* bounded: forget the oldest (it only costs a settle wait) */
        free(fs->complete[0]);
        memmove(fs->complete, fs->complete + 1, (MAX_COMPLETE - 1) * sizeof(*fs->complete));
        fs->n_complete--;
    }
    fs->complete = fr_xrealloc(fs->complete, (fs->n_complete + 1) * sizeof(*fs->complete));
    fs->complete[fs->n_complete++] = fr_xstrdup(name);
}

static void start_job(fr_filesrc_t *fs, const char *name, const char *ulid)
{
    struct job *j = fr_xcalloc(1, sizeof(*j));
    int rc;

    j->fs = fs;
    j->name = fr_xstrdup(name);
    j->complete = take_complete(fs, name);
    if (ulid) {
        memcpy(j->ulid, ulid, ULID_LEN + 1);
        j->resume = true;
    } else {
        fr_ulid(j->ulid);
    }
    j->t0_ms = fr_mono_ms();
    j->lock_fd = -1;
    if (uv_mutex_init(&j->mu) != 0 || uv_cond_init(&j->cond) != 0) {
        fr_error("cannot create a mutex for %s", name); /* not reached on Linux */
        abort();
    }
    j->next = fs->jobs;
    fs->jobs = j;
    fs->n_jobs++;
    rc = uv_queue_work(&fs->app->loop, &j->work, work_cb, after_work_cb);
    if (rc != 0) {
        fr_log_kv(FR_LOG_ERROR, "file", name, "cannot start a worker: %s", uv_strerror(rc));
        job_free(j);
    }
}

static void add_resume(fr_filesrc_t *fs, const char *entry)
{
    fs->resume = fr_xrealloc(fs->resume, (fs->n_resume + 1) * sizeof(*fs->resume));
    fs->resume[fs->n_resume++] = fr_xstrdup(entry);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void on_scan(uv_fs_t *req)
{
    fr_filesrc_t *fs = fr_container_of(req, fr_filesrc_t, scan_req);
    uv_dirent_t ent;
    char **names = NULL;
    size_t n = 0;

    fs->scanning = false;
    if (req->result < 0) {
        fr_log_kv(FR_LOG_WARN, "file", fs->inbound, "cannot list %s: %s", fs->inbound, uv_strerror((int)req->result));
        uv_fs_req_cleanup(req);
        maybe_stopped(fs);
        return;
    }
    while (uv_fs_scandir_next(req, &ent) == 0) {
        if ((ent.type == UV_DIRENT_DIR && workdir_name(ent.name)) || skip_name(ent.name))
            continue;
        names = fr_xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = fr_xstrdup(ent.name);
    }
    uv_fs_req_cleanup(req);
    if (!fs->stopping) {
        if (n > 1)
            qsort(names, n, sizeof(*names), cmp_str);
        for (size_t i = 0; i < n && fs->n_jobs < FR_FILESRC_MAX_JOBS; i++) {
            if (name_active(fs, names[i]) || name_ignored(fs, names[i]))
                continue;
            if (strlen(names[i]) > MAX_NAME) {
                fr_log_kv(FR_LOG_WARN, "file", names[i], "file name longer than %d bytes: ignored", MAX_NAME);
                ignore_name(fs, names[i]);
                continue;
            }
            start_job(fs, names[i], NULL);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (fs->stopping) {
        maybe_stopped(fs);
        return;
    }
    if (fs->rescan) {
        fs->rescan = false;
        kick(fs, 0);
    }
}

static void start_scan(fr_filesrc_t *fs)
{
    int rc;

    if (fs->stopping)
        return;
    if (fs->scanning) {
        fs->rescan = true;
        return;
    }
    rc = uv_fs_scandir(&fs->app->loop, &fs->scan_req, fs->inbound, 0, on_scan);
    if (rc != 0) {
        fr_log_kv(FR_LOG_WARN, "file", fs->inbound, "cannot list %s: %s", fs->inbound, uv_strerror(rc));
        return;
    }
    fs->scanning = true;
}

/* Starts files: those left in .processing/ first, then the inbox. */
static void schedule(fr_filesrc_t *fs)
{
    if (fs->stopping)
        return;
    while (fs->n_resume > 0 && fs->n_jobs < FR_FILESRC_MAX_JOBS && fr_mono_ms() >= fs->resume_after_ms) {
        char ulid[ULID_LEN + 1];
        const char *name;
        char *entry = fs->resume[0];

        memmove(fs->resume, fs->resume + 1, (fs->n_resume - 1) * sizeof(*fs->resume));
        fs->n_resume--;
        if (split_processing_name(entry, ulid, &name) && !name_active(fs, name))
            start_job(fs, name, ulid); /* logged "resumed" when done, if no live daemon holds it (lock_claimed) */
        free(entry);
    }
    /* Entries still listed are waiting for their retry delay: don't let
     * them hold up the inbox. */
    if (fs->n_jobs < FR_FILESRC_MAX_JOBS)
        start_scan(fs);
}

static void on_timer(uv_timer_t *t)
{
    schedule(fr_container_of(t, fr_filesrc_t, timer));
}

static uint64_t scan_interval(const fr_filesrc_t *fs)
{
    return fs->src->scan_interval_ms ? fs->src->scan_interval_ms : 1000;
}

/* Runs schedule() from the loop after delay_ms (0: next turn), never
 * re-entrantly from a completion. */
static void kick(fr_filesrc_t *fs, uint64_t delay_ms)
{
    if (fs->stopping || !fs->timer_init)
        return;
    if (uv_is_active((uv_handle_t *)&fs->timer) && uv_timer_get_due_in(&fs->timer) <= delay_ms)
        return; /* already due as soon */
    (void)uv_timer_start(&fs->timer, on_timer, delay_ms, scan_interval(fs));
}

static void on_watch(uv_poll_t *h, int status, int events)
{
    fr_filesrc_t *fs = fr_container_of(h, fr_filesrc_t, watch);
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    (void)events;
    if (status < 0) {
        fr_log_kv(FR_LOG_WARN, "file", fs->inbound, "watch error: %s (rescans continue)", uv_strerror(status));
        uv_poll_stop(h);
        return;
    }
    while ((n = read(fs->ino_fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;

            if (ev->len > 0 && (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && !skip_name(ev->name))
                add_complete(fs, ev->name);
            p += sizeof(*ev) + ev->len;
        }
    }
    kick(fs, 0);
}

static void on_item_done(struct fr_pub_item *it, bool ok, void *data)
{
    struct job *j = data;

    (void)it;
    j->outstanding--;
    if (!ok)
        j->lost = true;
    job_check(j);
}

static void log_result(struct job *j, const char *what)
{
    fr_log_kv(FR_LOG_INFO, "file", j->name,
              "%s: %" PRIu64 " rows ok, %" PRIu64 " rows rejected, %" PRIu64 " batches, %" PRIu64 " bytes, %" PRIu64
              " ms%s%s%s",
              what, j->rows_ok, j->rows_rejected, j->batches, j->bytes, fr_mono_ms() - j->t0_ms,
              j->resume ? " (resumed from .processing/)" : "", j->outcome == OUT_REJECTED ? "; reason: " : "",
              j->outcome == OUT_REJECTED ? j->reason : "");
}

/* Appends ,"key":"value" (JSON-escaped). */
static void json_kv(struct fr_buf *b, const char *key, const char *val)
{
    (void)fr_buf_printf(b, ",\"%s\":", key);
    (void)fr_buf_json_str(b, val, strlen(val));
}

static void publish_file_rejected(struct job *j)
{
    fr_filesrc_t *fs = j->fs;
    struct fr_buf b;

    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "{\"type\":\"file.rejected\",");
    (void)fr_ingest_event_ts(&b);
    json_kv(&b, "dataset", fs->ds->qname);
    json_kv(&b, "file", j->name);
    json_kv(&b, "reason", j->reason);
    (void)fr_buf_putc(&b, '}');
    fr_ingest_event(fs->app, b.data, b.len);
    fr_buf_deinit(&b);
}

static void publish_source_failed(struct job *j)
{
    fr_filesrc_t *fs = j->fs;
    struct fr_buf b;

    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "{\"type\":\"source.failed\",");
    (void)fr_ingest_event_ts(&b);
    json_kv(&b, "pipeline", fs->pl->name);
    json_kv(&b, "source", fs->src->name);
    json_kv(&b, "file", j->name);
    json_kv(&b, "reason", j->reason);
    (void)fr_buf_putc(&b, '}');
    fr_ingest_event(fs->app, b.data, b.len);
    fr_buf_deinit(&b);
}

/* One schema.drift event per kind the file showed (not for `ignore`). */
static void publish_drift(struct job *j)
{
    fr_filesrc_t *fs = j->fs;
    struct fr_buf b;

    fr_buf_init(&b, 0);
    for (int k = 0; k < FR_DRIFT_KINDS; k++) {
        enum fr_drift_kind kind = (enum fr_drift_kind)k;

        fr_buf_reset(&b);
        if (!fr_drift_event_json(&b, fs->pl->name, fs->ds->qname, j->name, kind, &j->drift[k],
                                 fr_drift_action_of(&fs->ds->drift, kind)))
            continue;
        fr_log_kv(FR_LOG_WARN, "file", j->name,
                  "schema drift (%s, action %s): %" PRIu64 " times, first at line %" PRIu32 ", field %s",
                  fr_drift_kind_name(kind), fr_drift_action_name(fr_drift_action_of(&fs->ds->drift, kind)),
                  j->drift[k].count, j->drift[k].first_line, j->drift[k].n_fields ? j->drift[k].fields[0] : "");
        fr_ingest_event(fs->app, b.data, b.len);
    }
    fr_buf_deinit(&b);
}

static void after_fin_cb(uv_work_t *req, int status)
{
    struct job *j = fr_container_of(req, struct job, fin);
    fr_filesrc_t *fs = j->fs;

    (void)status;
    if (j->fin_err != 0) {
        /* Its batches are in Redis; leave it in .processing/ so the next
         * start resumes it (the ledger ignores the repeated ids). */
        fr_log_kv(FR_LOG_ERROR, "file", j->name, "cannot move %s-%s out of .processing: %s", j->ulid, j->name,
                  strerror(j->fin_err));
    } else if (j->outcome == OUT_DONE) {
        (*fs->m_files_done)++;
        (*fs->m_bytes) += j->bytes;
        log_result(j, "done");
        publish_drift(j);
    } else {
        (*fs->m_files_rejected)++;
        (*fs->m_bytes) += j->bytes;
        log_result(j, "rejected");
        publish_drift(j);
        publish_file_rejected(j);
    }
    job_free(j);
    kick(fs, 0); /* more files may be waiting */
}

/* Loop: decides what happens to a job once its worker ended and every item
 * it produced is settled. May free j. */
static void job_check(struct job *j)
{
    fr_filesrc_t *fs = j->fs;
    size_t qlen;
    int rc;

    if (!j->worker_done || j->finishing)
        return;
    uv_mutex_lock(&j->mu);
    qlen = j->qlen;
    if (fs->stopping && qlen > 0) {
        /* Not sent and never will be: the file stays in .processing/. */
        while (j->qhead) {
            struct fr_pub_item *it = j->qhead;
            j->qhead = it->next;
            fr_pub_item_free(it);
        }
        j->qtail = NULL;
        j->qlen = qlen = 0;
        j->lost = true;
    }
    uv_mutex_unlock(&j->mu);
    if (qlen > 0 || j->outstanding > 0)
        return;

    switch (j->outcome) {
    case OUT_DONE:
    case OUT_REJECTED:
        if (j->lost) {
            fr_log_kv(FR_LOG_INFO, "file", j->name,
                      "stopped before all its batches were published; resumes on next start");
            job_free(j);
            return;
        }
        j->finishing = true;
        rc = uv_queue_work(&fs->app->loop, &j->fin, fin_cb, after_fin_cb);
        if (rc != 0) {
            fr_log_kv(FR_LOG_ERROR, "file", j->name, "cannot queue the final move: %s", uv_strerror(rc));
            job_free(j);
        }
        return;
    case OUT_DEFERRED:
        job_free(j);
        kick(fs, RECHECK_MS);
        return;
    case OUT_IGNORED:
        ignore_name(fs, j->name);
        job_free(j);
        return;
    case OUT_STOPPED:
        fr_log_kv(FR_LOG_INFO, "file", j->name,
                  "stopped mid-file (%" PRIu64 " batches produced); resumes on next start", j->batches);
        job_free(j);
        return;
    case OUT_FAILED: {
        char *entry = fr_xasprintf("%s-%s", j->ulid, j->name);
        bool claimed = j->claimed;

        fr_log_kv(FR_LOG_ERROR, "file", j->name, "failed: %s; retrying in %d ms", j->reason, FAILED_RETRY_MS);
        publish_source_failed(j);
        if (claimed && !fs->stopping)
            add_resume(fs, entry);
        free(entry);
        fs->resume_after_ms = fr_mono_ms() + FAILED_RETRY_MS;
        job_free(j);
        kick(fs, FAILED_RETRY_MS);
        return;
    }
    case OUT_GONE:
    case OUT_NONE:
    default:
        job_free(j);
        kick(fs, 0);
        return;
    }
}

static void after_work_cb(uv_work_t *req, int status)
{
    struct job *j = fr_container_of(req, struct job, work);

    if (status < 0 && j->outcome == OUT_NONE)
        set_outcome(j, OUT_STOPPED, NULL); /* cancelled before it ran */
    j->worker_done = true;
    fr_filesrc_pump(j->fs);
}

void fr_filesrc_pump(fr_filesrc_t *fs)
{
    struct job *j, *next;

    for (j = fs->jobs; j; j = next) {
        next = j->next;
        while (!fs->stopping && fr_publisher_has_room(fs->pub)) {
            struct fr_pub_item *it;

            uv_mutex_lock(&j->mu);
            it = j->qhead;
            if (it) {
                j->qhead = it->next;
                if (j->qhead == NULL)
                    j->qtail = NULL;
                j->qlen--;
                uv_cond_signal(&j->cond);
            }
            uv_mutex_unlock(&j->mu);
            if (it == NULL)
                break;
            it->on_done = on_item_done;
            it->done_data = j;
            j->outstanding++;
            fr_publisher_submit(fs->pub, it);
        }
        job_check(j); /* may free j */
    }
    update_depth(fs);
}

/* ================================================================= public */

static void on_handle_closed(uv_handle_t *h)
{
    fr_filesrc_t *fs = h->data;

    fs->open_handles--;
    maybe_stopped(fs);
}

/* Startup: true (err filled) when path is a symbolic link. */
static bool refuse_link(const fr_filesrc_t *fs, const char *path, char err[FR_ERR_LEN])
{
    struct stat st;

    if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode))
        return false;
    snprintf(err, FR_ERR_LEN,
             "source %s: %s is a symbolic link: refusing to start (make it a directory owned by the freshet user; "
             "see docs/security.md)",
             fs->label, path);
    return true;
}

/* Startup: opens a working directory once. With nofollow (done/,
 * rejected/, .processing/), a symbolic link there is refused: ingest would
 * otherwise move files wherever the link points. */
static int open_workdir(fr_filesrc_t *fs, const char *path, bool nofollow, int *out, char err[FR_ERR_LEN])
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));

    if (fd < 0) {
        int e = errno;

        if (!nofollow || !refuse_link(fs, path, err))
            snprintf(err, FR_ERR_LEN, "source %s: cannot open directory %s: %s", fs->label, path, strerror(e));
        return -1;
    }
    *out = fd;
    return 0;
}

fr_filesrc_t *fr_filesrc_new(struct fr_app *app, const struct fr_pipeline *p, const struct fr_source *src,
                             fr_publisher_t *pub, uv_async_t *wake, char err[FR_ERR_LEN])
{
    fr_filesrc_t *fs;
    const char *dirs[5];
    char labels[256];
    int rc;

    fs = fr_xcalloc(1, sizeof(*fs));
    fs->app = app;
    fs->ino_fd = -1;
    fs->inbound_fd = fs->processing_fd = fs->done_fd = fs->rejected_fd = -1;
    fs->pl = p;
    fs->src = src;
    fs->pub = pub;
    fs->wake = wake;
    fs->ds = fr_pipeline_dataset(p, src->dataset);
    fs->label = fr_xasprintf("%s.%s", p->name, src->name);
    if (fs->ds == NULL) {
        snprintf(err, FR_ERR_LEN, "source %s: unknown dataset %s", fs->label, src->dataset);
        goto out_free;
    }
    if (src->dir == NULL || src->dir[0] == '\0') {
        snprintf(err, FR_ERR_LEN, "source %s: no inbound dir", fs->label);
        goto out_free;
    }
    fs->inbound = fr_xasprintf("%s/%s", app->settings.data_dir, src->dir);
    fs->processing = fr_xasprintf("%s/.processing", fs->inbound);
    fs->done = fr_xasprintf("%s/done", fs->inbound);
    fs->rejected = fr_xasprintf("%s/rejected", fs->inbound);
    fs->landing_rel = fr_xasprintf("landing/%s/%s", p->name, src->name);
    fs->landing = fr_xasprintf("%s/%s", app->settings.data_dir, fs->landing_rel);
    dirs[0] = fs->inbound;
    dirs[1] = fs->processing;
    dirs[2] = fs->done;
    dirs[3] = fs->rejected;
    dirs[4] = fs->landing;
    for (size_t i = 0; i < FR_ARRAY_LEN(dirs); i++) {
        if (i >= 1 && i <= 3 && refuse_link(fs, dirs[i], err)) /* .processing, done, rejected */
            goto out_free;
        rc = fr_mkdirs(dirs[i], 0755);
        if (rc != 0) {
            snprintf(err, FR_ERR_LEN, "source %s: cannot create %s: %s", fs->label, dirs[i], strerror(-rc));
            goto out_free;
        }
    }
    /* Claims and moves go through these descriptors (openat/renameat), so a
     * working directory swapped for a link later is not followed. */
    if (open_workdir(fs, fs->inbound, false, &fs->inbound_fd, err) != 0 ||
        open_workdir(fs, fs->processing, true, &fs->processing_fd, err) != 0 ||
        open_workdir(fs, fs->done, true, &fs->done_fd, err) != 0 ||
        open_workdir(fs, fs->rejected, true, &fs->rejected_fd, err) != 0)
        goto out_free;
    fs->m_files_done =
        fr_metrics_counter(app->metrics, "ingest_files_total", "Files finished, by result", "result=\"done\"");
    fs->m_files_rejected =
        fr_metrics_counter(app->metrics, "ingest_files_total", "Files finished, by result", "result=\"rejected\"");
    fs->m_bytes = fr_metrics_counter(app->metrics, "ingest_bytes_total", "Raw bytes of finished files", NULL);
    snprintf(labels, sizeof(labels), "source=\"%s\"", fs->label);
    fs->m_queue_depth =
        fr_metrics_gauge(app->metrics, "ingest_queue_depth",
                         "Items (batches, rejected rows) parsed and not yet accepted by Redis", labels);
    return fs;

out_free:
    fr_filesrc_free(fs);
    return NULL;
}

int fr_filesrc_start(fr_filesrc_t *fs)
{
    DIR *d = NULL;
    struct dirent *de;
    int rc, dfd;

    /* Startup: a blocking listing of .processing/ is fine here (through
     * its descriptor, like every other use). */
    dfd = openat(fs->processing_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0 && (d = fdopendir(dfd)) == NULL)
        close(dfd);
    if (d) {
        while ((de = readdir(d)) != NULL) {
            char ulid[ULID_LEN + 1];
            const char *name;

            if (de->d_name[0] == '.')
                continue;
            if (!split_processing_name(de->d_name, ulid, &name)) {
                fr_log_kv(FR_LOG_WARN, "file", de->d_name, "unexpected file in %s: left alone", fs->processing);
                continue;
            }
            add_resume(fs, de->d_name);
        }
        closedir(d);
        if (fs->n_resume > 1)
            qsort(fs->resume, fs->n_resume, sizeof(*fs->resume), cmp_str);
    }

    uv_timer_init(&fs->app->loop, &fs->timer);
    fs->timer.data = fs;
    fs->timer_init = true;
    fs->open_handles++;
    /* inotify, not uv_fs_event: we need IN_CLOSE_WRITE / IN_MOVED_TO to know
     * a file is complete without waiting for it to settle. */
    fs->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    rc = fs->ino_fd < 0 ? -errno : 0;
    if (rc == 0 && inotify_add_watch(fs->ino_fd, fs->inbound, IN_CLOSE_WRITE | IN_MOVED_TO) < 0)
        rc = -errno;
    if (rc == 0 && (rc = uv_poll_init(&fs->app->loop, &fs->watch, fs->ino_fd)) == 0) {
        fs->watch.data = fs;
        fs->watch_init = true;
        fs->open_handles++;
        rc = uv_poll_start(&fs->watch, UV_READABLE, on_watch);
    }
    if (rc != 0)
        fr_log_kv(FR_LOG_WARN, "file", fs->inbound, "cannot watch %s: %s; relying on rescans every %" PRIu64 " ms",
                  fs->inbound, uv_strerror(rc), scan_interval(fs));
    fs->started = true;
    fr_info("source %s: watching %s (%zu file(s) to resume)", fs->label, fs->inbound, fs->n_resume);
    return uv_timer_start(&fs->timer, on_timer, 0, scan_interval(fs));
}

void fr_filesrc_stop(fr_filesrc_t *fs, void (*cb)(void *data), void *data)
{
    struct job *j, *next;

    if (fs->stopping)
        return;
    fs->stopping = true;
    fs->stop_cb = cb;
    fs->stop_data = data;
    if (fs->watch_init && !uv_is_closing((uv_handle_t *)&fs->watch)) {
        uv_poll_stop(&fs->watch); /* before the fd is closed (in fr_filesrc_free) */
        uv_close((uv_handle_t *)&fs->watch, on_handle_closed);
    }
    if (fs->timer_init && !uv_is_closing((uv_handle_t *)&fs->timer)) {
        uv_timer_stop(&fs->timer);
        uv_close((uv_handle_t *)&fs->timer, on_handle_closed);
    }
    for (j = fs->jobs; j; j = j->next) {
        uv_mutex_lock(&j->mu);
        j->stop = true;
        uv_cond_broadcast(&j->cond);
        uv_mutex_unlock(&j->mu);
    }
    for (j = fs->jobs; j; j = next) {
        next = j->next;
        job_check(j); /* drops what finished workers left queued; may free j */
    }
    maybe_stopped(fs);
}

void fr_filesrc_free(fr_filesrc_t *fs)
{
    if (fs == NULL)
        return;
    for (size_t i = 0; i < fs->n_resume; i++)
        free(fs->resume[i]);
    free(fs->resume);
    for (size_t i = 0; i < fs->n_ignored; i++)
        free(fs->ignored[i]);
    free(fs->ignored);
    for (size_t i = 0; i < fs->n_complete; i++)
        free(fs->complete[i]);
    free(fs->complete);
    if (fs->ino_fd >= 0)
        close(fs->ino_fd); /* the poll handle was closed before (handles close before free) */
    if (fs->inbound_fd >= 0)
        close(fs->inbound_fd);
    if (fs->processing_fd >= 0)
        close(fs->processing_fd);
    if (fs->done_fd >= 0)
        close(fs->done_fd);
    if (fs->rejected_fd >= 0)
        close(fs->rejected_fd);
    free(fs->label);
    free(fs->inbound);
    free(fs->processing);
    free(fs->done);
    free(fs->rejected);
    free(fs->landing);
    free(fs->landing_rel);
    free(fs);
}
