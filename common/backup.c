/* backup: dataset tables to Avro object container files and back.
 * libavro (avro-c) parses the schema and encodes/decodes every record; the
 * container's header and block framing are written here because avro-c
 * 1.11's file writer cannot add user metadata (freshet.*) to the header.
 * Restore walks the framing and every record itself first (bounds-checked:
 * every block's size within the file, every sync marker in place, nothing
 * trailing, every length within its block), so a truncated or corrupt file
 * is refused before avro-c decodes a record (avro-c trusts the lengths it
 * reads). Fuzzed by tests/fuzz/fuzz_backup.c. */
#include "backup.h"

#include <avro.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "names.h"

#define BLOCK_BYTES (256u << 10) /* records per container block: up to this many bytes */
#define SYNC_LEN    16

/* Values restore writes exactly (years 0001..9999, as freshet formats them). */
#define MIN_DAYS (-719162)              /* 0001-01-01, days from 1970-01-01 */
#define MAX_DAYS 2932896                /* 9999-12-31 */
#define MIN_US   (-62135596800000000LL) /* 0001-01-01T00:00:00Z, microseconds from 1970 */
#define MAX_US   (253402300799999999LL) /* 9999-12-31T23:59:59.999999Z */

/* ---- schema ------------------------------------------------------------------ */

/* The Avro type of a column (inside ["null", T]). */
static const char *avro_type_json(enum fr_type t)
{
    switch (t) {
    case FR_T_TEXT:
    case FR_T_NUMERIC:
    case FR_T_JSON:
        return "\"string\"";
    case FR_T_INT:
        return "\"int\"";
    case FR_T_BIGINT:
        return "\"long\"";
    case FR_T_FLOAT:
        return "\"double\"";
    case FR_T_BOOL:
        return "\"boolean\"";
    case FR_T_TIMESTAMPTZ:
        return "{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}";
    case FR_T_DATE:
        return "{\"type\":\"int\",\"logicalType\":\"date\"}";
    }
    return "\"string\"";
}

static void schema_json(const struct fr_pipeline *p, const struct fr_dataset *ds, struct fr_buf *b)
{
    (void)fr_buf_printf(b, "{\"type\":\"record\",\"name\":\"%s\",\"namespace\":\"freshet.%s\",\"fields\":[", ds->name,
                        p->name);
    for (size_t i = 0; i < ds->n_columns; i++)
        (void)fr_buf_printf(b, "%s{\"name\":\"%s\",\"type\":[\"null\",%s]}", i ? "," : "", ds->columns[i].name,
                            avro_type_json(ds->columns[i].type));
    (void)fr_buf_puts(b, "]}");
}

/* ---- Avro binary primitives (container framing) ---------------------------------- */

static void put_long(struct fr_buf *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    unsigned char tmp[10];
    size_t n = 0;

    do {
        unsigned char c = z & 0x7f;
        z >>= 7;
        tmp[n++] = (unsigned char)(c | (z ? 0x80 : 0));
    } while (z);
    (void)fr_buf_append(b, tmp, n);
}

static void put_bytes(struct fr_buf *b, const char *s, size_t n)
{
    put_long(b, (int64_t)n);
    (void)fr_buf_append(b, s, n);
}

/* A bounds-checked reader over the file. */
struct cur {
    const unsigned char *p;
    size_t n;
    size_t off;
};

static bool get_long(struct cur *c, int64_t *out)
{
    uint64_t z = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        unsigned char b;
        if (c->off >= c->n)
            return false;
        b = c->p[c->off++];
        z |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            return true;
        }
    }
    return false;
}

static bool get_bytes(struct cur *c, const char **s, size_t *n)
{
    int64_t len;
    if (!get_long(c, &len) || len < 0 || (uint64_t)len > c->n - c->off)
        return false;
    *s = (const char *)c->p + c->off;
    *n = (size_t)len;
    c->off += (size_t)len;
    return true;
}

/* ---- PostgreSQL (blocking) ------------------------------------------------------------ */

/* Gives up after 5 s unless conninfo sets its own connect_timeout (it is
 * expanded after ours, so it wins). */
static PGconn *connect_pg(const char *conninfo, char err[FR_ERR_LEN])
{
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const vals[] = {"5", conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        snprintf(err, FR_ERR_LEN,
                 "cannot connect to PostgreSQL: %.*s; set FRESHET_DATABASE_URL (or --database-url) to the "
                 "PostgreSQL the loader uses",
                 (int)strcspn(m, "\n"), m);
        PQfinish(c);
        return NULL;
    }
    return c;
}

static bool exec_ok(PGconn *c, const char *sql, char err[FR_ERR_LEN])
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, FR_ERR_LEN, "%s failed: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* ---- backup ------------------------------------------------------------------------- */

struct enc {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t rec;
    struct fr_buf *out;  /* borrowed: the blocks of the file */
    struct fr_buf block; /* records of the current block */
    int64_t block_n;
    char sync[SYNC_LEN];
};

static void flush_block(struct enc *e)
{
    if (e->block_n == 0)
        return;
    put_long(e->out, e->block_n);
    put_long(e->out, (int64_t)e->block.len);
    (void)fr_buf_append(e->out, e->block.data, e->block.len);
    (void)fr_buf_append(e->out, e->sync, SYNC_LEN);
    fr_buf_reset(&e->block);
    e->block_n = 0;
}

/* Sets field i of the record from PostgreSQL's text (NULL = null). */
static int set_field(struct enc *e, const struct fr_column *col, size_t i, const char *v, char err[FR_ERR_LEN])
{
    avro_value_t field, branch;
    int64_t n = 0;
    int rc;

    if (avro_value_get_by_index(&e->rec, i, &field, NULL) != 0)
        goto out_avro;
    if (!v) {
        if (avro_value_set_branch(&field, 0, &branch) != 0 || avro_value_set_null(&branch) != 0)
            goto out_avro;
        return 0;
    }
    if (avro_value_set_branch(&field, 1, &branch) != 0)
        goto out_avro;
    switch (col->type) {
    case FR_T_TEXT:
    case FR_T_NUMERIC:
    case FR_T_JSON:
        rc = avro_value_set_string_len(&branch, v, strlen(v) + 1);
        break;
    case FR_T_INT:
    case FR_T_DATE:
        if (!fr_parse_i64(v, strlen(v), &n) || n < INT32_MIN || n > INT32_MAX)
            goto out_value;
        rc = avro_value_set_int(&branch, (int32_t)n);
        break;
    case FR_T_BIGINT:
    case FR_T_TIMESTAMPTZ:
        if (!fr_parse_i64(v, strlen(v), &n))
            goto out_value;
        rc = avro_value_set_long(&branch, n);
        break;
    case FR_T_FLOAT: {
        char *end;
        double d = strtod(v, &end); /* also "NaN", "Infinity", "-Infinity" */
        if (*end)
            goto out_value;
        rc = avro_value_set_double(&branch, d);
        break;
    }
    case FR_T_BOOL:
        rc = avro_value_set_boolean(&branch, v[0] == 't');
        break;
    default:
        goto out_value;
    }
    if (rc != 0)
        goto out_avro;
    return 0;
out_value:
    snprintf(err, FR_ERR_LEN, "column %s: cannot encode value '%.60s' as %s", col->name, v, fr_type_name(col->type));
    return -EINVAL;
out_avro:
    snprintf(err, FR_ERR_LEN, "column %s: avro: %s", col->name, avro_strerror());
    return -EINVAL;
}

static int append_record(struct enc *e, char err[FR_ERR_LEN])
{
    size_t size = 0;
    avro_writer_t w;

    if (avro_value_sizeof(&e->rec, &size) != 0) {
        snprintf(err, FR_ERR_LEN, "avro: %s", avro_strerror());
        return -EINVAL;
    }
    if (fr_buf_reserve(&e->block, size) != 0) {
        snprintf(err, FR_ERR_LEN, "backup too large for memory");
        return -ENOMEM;
    }
    w = avro_writer_memory(e->block.data + e->block.len, (int64_t)size);
    if (!w || avro_value_write(w, &e->rec) != 0) {
        snprintf(err, FR_ERR_LEN, "avro: %s", avro_strerror());
        avro_writer_free(w);
        return -EINVAL;
    }
    avro_writer_free(w);
    e->block.len += size;
    e->block_n++;
    if (e->block.len >= BLOCK_BYTES)
        flush_block(e);
    return 0;
}

/* SELECT list: text for most types, epoch microseconds for timestamptz,
 * days since 1970-01-01 for date. */
static void select_sql(const struct fr_dataset *ds, struct fr_buf *s)
{
    (void)fr_buf_puts(s, "SELECT ");
    for (size_t i = 0; i < ds->n_columns; i++) {
        const struct fr_column *c = &ds->columns[i];
        if (i)
            (void)fr_buf_puts(s, ", ");
        if (c->type == FR_T_TIMESTAMPTZ) {
            (void)fr_buf_puts(s, "(EXTRACT(EPOCH FROM ");
            fr_buf_sql_ident(s, c->name);
            (void)fr_buf_puts(s, ") * 1000000)::bigint");
        } else if (c->type == FR_T_DATE) {
            (void)fr_buf_puts(s, "(");
            fr_buf_sql_ident(s, c->name);
            (void)fr_buf_puts(s, " - DATE '1970-01-01')");
        } else {
            fr_buf_sql_ident(s, c->name);
        }
    }
    (void)fr_buf_puts(s, " FROM ");
    fr_buf_sql_ident(s, ds->table);
    if (ds->n_key) {
        (void)fr_buf_puts(s, " ORDER BY ");
        for (size_t k = 0; k < ds->n_key; k++) {
            if (k)
                (void)fr_buf_puts(s, ", ");
            fr_buf_sql_ident(s, ds->key[k]);
        }
    }
}

int fr_backup_encode(const char *conninfo, const struct fr_pipeline *p, const struct fr_dataset *ds, char **out,
                     size_t *len, int64_t *rows, char err[FR_ERR_LEN])
{
    struct fr_buf file, body, js, sql;
    char nrows[24];
    struct enc e;
    PGconn *c = NULL;
    PGresult *r;
    int64_t n = 0;
    char sv[16];
    char seed[80];
    char hex[65];
    int rc = -EIO;

    memset(&e, 0, sizeof(e));
    fr_buf_init(&file, 0);
    fr_buf_init(&body, 0);
    fr_buf_init(&js, 0);
    fr_buf_init(&sql, 0);
    fr_buf_init(&e.block, 0);
    e.out = &body;
    schema_json(p, ds, &js);
    if (avro_schema_from_json_length(js.data, js.len, &e.schema) != 0) {
        snprintf(err, FR_ERR_LEN, "dataset %s: avro schema refused: %s", ds->qname, avro_strerror());
        rc = -EINVAL;
        goto out;
    }
    e.iface = avro_generic_class_from_schema(e.schema);
    if (!e.iface || avro_generic_value_new(e.iface, &e.rec) != 0) {
        snprintf(err, FR_ERR_LEN, "avro: %s", avro_strerror());
        rc = -EINVAL;
        goto out;
    }
    /* header: magic, metadata, sync marker */
    snprintf(seed, sizeof(seed), "%s %" PRId64 " %d", ds->qname, fr_wall_us(), (int)getpid());
    fr_sha256_hex(seed, strlen(seed), hex);
    for (size_t i = 0; i < SYNC_LEN; i++)
        e.sync[i] = (char)(unsigned char)strtoul((char[]){hex[2 * i], hex[2 * i + 1], 0}, NULL, 16);

    c = connect_pg(conninfo, err);
    if (!c)
        goto out;
    if (!exec_ok(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err))
        goto out;
    select_sql(ds, &sql);
    if (!PQsendQuery(c, sql.data) || !PQsetSingleRowMode(c)) {
        snprintf(err, FR_ERR_LEN, "cannot read %s: %s", ds->table, PQerrorMessage(c));
        goto out;
    }
    rc = 0;
    while ((r = PQgetResult(c))) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && rc == 0) {
            for (size_t i = 0; i < ds->n_columns && rc == 0; i++)
                rc = set_field(&e, &ds->columns[i], i, PQgetisnull(r, 0, (int)i) ? NULL : PQgetvalue(r, 0, (int)i),
                               err);
            if (rc == 0)
                rc = append_record(&e, err);
            n++;
        } else if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE && rc == 0) {
            snprintf(err, FR_ERR_LEN, "cannot read %s: %s", ds->table, PQresultErrorMessage(r));
            rc = -EIO;
        }
        PQclear(r);
    }
    if (rc != 0)
        goto out;
    flush_block(&e);
    /* The header last, once the row count is known: freshet.rows lets a
     * restore notice a file cut exactly at a block boundary. */
    (void)fr_buf_append(&file, "Obj\x01", 4);
    put_long(&file, 6);
    put_bytes(&file, "avro.schema", 11);
    put_bytes(&file, js.data, js.len);
    put_bytes(&file, "avro.codec", 10);
    put_bytes(&file, "null", 4);
    put_bytes(&file, "freshet.pipeline", 16);
    put_bytes(&file, p->name, strlen(p->name));
    put_bytes(&file, "freshet.dataset", 15);
    put_bytes(&file, ds->qname, strlen(ds->qname));
    snprintf(sv, sizeof(sv), "%" PRIu32, ds->schema_version);
    put_bytes(&file, "freshet.schema_version", 22);
    put_bytes(&file, sv, strlen(sv));
    snprintf(nrows, sizeof(nrows), "%" PRId64, n);
    put_bytes(&file, "freshet.rows", 12);
    put_bytes(&file, nrows, strlen(nrows));
    put_long(&file, 0);
    (void)fr_buf_append(&file, e.sync, SYNC_LEN);
    (void)fr_buf_append(&file, body.data, body.len);
    *out = file.data;
    *len = file.len;
    file.data = NULL; /* moved out */
    file.len = 0;
    if (rows)
        *rows = n;
out:
    if (c)
        PQfinish(c);
    if (e.iface) {
        if (e.rec.iface)
            avro_value_decref(&e.rec);
        avro_value_iface_decref(e.iface);
    }
    if (e.schema)
        avro_schema_decref(e.schema);
    fr_buf_deinit(&e.block);
    fr_buf_deinit(&sql);
    fr_buf_deinit(&js);
    fr_buf_deinit(&body);
    fr_buf_deinit(&file);
    return rc;
}

int fr_backup_write(const char *conninfo, const struct fr_pipeline *p, const struct fr_dataset *ds, const char *path,
                    int64_t *rows, char err[FR_ERR_LEN])
{
    char *data = NULL;
    size_t len = 0;
    int rc = fr_backup_encode(conninfo, p, ds, &data, &len, rows, err);

    if (rc != 0)
        return rc;
    /* durable: the caller may delete the table's rows once this returns */
    rc = fr_write_file_atomic(path, data, len, 0644, FR_WRITE_DURABLE);
    if (rc != 0)
        snprintf(err, FR_ERR_LEN, "cannot write %s: %s; check the directory exists and is writable", path,
                 strerror(-rc));
    free(data);
    return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* data[0..len) to a new file of dir under a fresh name (see
 * fr_backup_write_unique). */
static int write_unique(const char *dir, const char *qname, const char *data, size_t len,
                        char name[FR_BACKUP_NAME_LEN], char err[FR_ERR_LEN])
{
    char tmp[1024], path[1024 + FR_BACKUP_NAME_LEN];
    char ts[32], id[27];
    struct tm tm;
    time_t now = time(NULL);
    int fd, dfd, rc = 0;

    if (snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, qname) >= (int)sizeof(tmp)) {
        snprintf(err, FR_ERR_LEN, "backup directory path too long: %.200s", dir);
        return -ENAMETOOLONG;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, FR_ERR_LEN, "cannot create a file in %.120s: %.60s; check the directory exists and is writable",
                 dir, strerror(-rc));
        return rc;
    }
    rc = write_all(fd, data, len);
    if (rc == 0 && fchmod(fd, 0644) < 0)
        rc = -errno;
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc != 0) {
        snprintf(err, FR_ERR_LEN, "cannot write %.160s: %.60s", tmp, strerror(-rc));
        goto out_unlink;
    }
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    rc = -EEXIST;
    for (int tries = 0; tries < 16 && rc == -EEXIST; tries++) {
        fr_ulid(id); /* its last 16 characters are random */
        snprintf(name, FR_BACKUP_NAME_LEN, "%.200s-%s-%s.avro", qname, ts, id + 18);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        rc = link(tmp, path) == 0 ? 0 : -errno; /* never replaces a file */
    }
    if (rc != 0) {
        snprintf(err, FR_ERR_LEN, "cannot create %.160s: %.60s", path, strerror(-rc));
        goto out_unlink;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)unlink(tmp);
        if (fsync(dfd) < 0)
            rc = -errno;
        close(dfd);
        if (rc != 0)
            snprintf(err, FR_ERR_LEN, "cannot sync directory %.160s: %.60s", dir, strerror(-rc));
        return rc;
    }
out_unlink:
    (void)unlink(tmp);
    return rc;
}

int fr_backup_write_unique(const char *conninfo, const struct fr_pipeline *p, const struct fr_dataset *ds,
                           const char *dir, char name[FR_BACKUP_NAME_LEN], int64_t *rows, char err[FR_ERR_LEN])
{
    char *data = NULL;
    size_t len = 0;
    int rc = fr_backup_encode(conninfo, p, ds, &data, &len, rows, err);

    if (rc != 0)
        return rc;
    rc = write_unique(dir, ds->qname, data, len, name, err);
    free(data);
    return rc;
}

/* ---- restore ------------------------------------------------------------------------------ */

/* Parses the header and checks the framing of every block. Fills the
 * schema JSON (borrowed from the buffer, not NUL-terminated), the
 * freshet.dataset value and the record count. */
static int check_container(const void *avro, size_t len, const char **schema, size_t *schema_len, const char **dsname,
                           size_t *dsname_len, int64_t *records, char err[FR_ERR_LEN])
{
    struct cur c = {.p = avro, .n = len, .off = 0};
    const unsigned char *sync;
    int64_t total = 0;
    int64_t declared = -1; /* freshet.rows, -1 = absent */

    *schema = NULL;
    *dsname = NULL;
    if (len < 4 + 1 + SYNC_LEN || memcmp(avro, "Obj\x01", 4) != 0) {
        snprintf(err, FR_ERR_LEN, "not an Avro object container file (bad magic)");
        return -EBADMSG;
    }
    c.off = 4;
    for (;;) {
        int64_t n;
        if (!get_long(&c, &n))
            goto corrupt;
        if (n == 0)
            break;
        if (n < 0) { /* a negative count is followed by the block's byte size */
            int64_t skip;
            if (n == INT64_MIN || !get_long(&c, &skip))
                goto corrupt;
            n = -n;
        }
        for (int64_t i = 0; i < n; i++) {
            const char *k, *v;
            size_t kn, vn;
            if (!get_bytes(&c, &k, &kn) || !get_bytes(&c, &v, &vn))
                goto corrupt;
            if (kn == 11 && memcmp(k, "avro.schema", 11) == 0) {
                *schema = v;
                *schema_len = vn;
            } else if (kn == 10 && memcmp(k, "avro.codec", 10) == 0 && !(vn == 4 && memcmp(v, "null", 4) == 0)) {
                snprintf(err, FR_ERR_LEN,
                         "Avro codec '%.*s' is not supported (only null); write the file "
                         "with freshet-loader backup",
                         (int)(vn > 32 ? 32 : vn), v);
                return -EPROTO;
            } else if (kn == 12 && memcmp(k, "freshet.rows", 12) == 0) {
                if (!fr_parse_i64(v, vn, &declared) || declared < 0)
                    goto corrupt;
            } else if (kn == 15 && memcmp(k, "freshet.dataset", 15) == 0) {
                *dsname = v;
                *dsname_len = vn;
            }
        }
    }
    if (len - c.off < SYNC_LEN)
        goto corrupt;
    sync = c.p + c.off;
    c.off += SYNC_LEN;
    if (!*schema) {
        snprintf(err, FR_ERR_LEN, "Avro file has no avro.schema in its header");
        return -EBADMSG;
    }
    while (c.off < len) {
        int64_t n, size;
        if (!get_long(&c, &n) || !get_long(&c, &size) || n < 0 || size < 0 || (uint64_t)size > len - c.off)
            goto corrupt;
        c.off += (size_t)size;
        if (len - c.off < SYNC_LEN || memcmp(c.p + c.off, sync, SYNC_LEN) != 0)
            goto corrupt;
        c.off += SYNC_LEN;
        if (n > INT64_MAX - total)
            goto corrupt;
        total += n;
    }
    if (declared >= 0 && declared != total) {
        snprintf(err, FR_ERR_LEN,
                 "corrupt Avro file: it holds %" PRId64 " records but its header says %" PRId64 " (truncated)", total,
                 declared);
        return -EBADMSG;
    }
    *records = total;
    return 0;
corrupt:
    snprintf(err, FR_ERR_LEN, "corrupt Avro file: framing broken at byte %zu of %zu (truncated or damaged)", c.off,
             len);
    return -EBADMSG;
}

/* Walks every record of every block with bounds checks, for the dataset's
 * schema (already checked): union index 0/1, string lengths within the
 * block, ints in range, booleans 0/1, each block consumed exactly. avro-c
 * then decodes only well-formed records (it trusts lengths: a damaged one
 * would make it allocate whatever the file claims). */
static int check_records(const struct fr_dataset *ds, const void *avro, size_t len, char err[FR_ERR_LEN])
{
    struct cur c = {.p = avro, .n = len, .off = 4};
    int64_t rec = 0;

    for (;;) { /* the header's metadata map */
        int64_t n;
        if (!get_long(&c, &n))
            goto corrupt;
        if (n == 0)
            break;
        if (n < 0) {
            int64_t skip;
            if (n == INT64_MIN || !get_long(&c, &skip))
                goto corrupt;
            n = -n;
        }
        for (int64_t i = 0; i < n; i++) {
            const char *k;
            size_t kn;
            if (!get_bytes(&c, &k, &kn) || !get_bytes(&c, &k, &kn))
                goto corrupt;
        }
    }
    c.off += SYNC_LEN;
    while (c.off < len) {
        int64_t n, size;
        struct cur b;
        if (!get_long(&c, &n) || !get_long(&c, &size) || n < 0 || size < 0 || (uint64_t)size > len - c.off)
            goto corrupt;
        b = (struct cur){.p = c.p + c.off, .n = (size_t)size, .off = 0};
        for (int64_t r = 0; r < n; r++, rec++) {
            for (size_t i = 0; i < ds->n_columns; i++) {
                int64_t u, v;
                const char *sv;
                size_t sn;
                if (!get_long(&b, &u) || (u != 0 && u != 1))
                    goto bad_record;
                if (u == 0)
                    continue;
                switch (ds->columns[i].type) {
                case FR_T_TEXT:
                case FR_T_NUMERIC:
                case FR_T_JSON:
                    if (!get_bytes(&b, &sv, &sn))
                        goto bad_record;
                    break;
                case FR_T_INT:
                case FR_T_DATE:
                    if (!get_long(&b, &v) || v < INT32_MIN || v > INT32_MAX)
                        goto bad_record;
                    break;
                case FR_T_BIGINT:
                case FR_T_TIMESTAMPTZ:
                    if (!get_long(&b, &v))
                        goto bad_record;
                    break;
                case FR_T_FLOAT:
                    if (b.n - b.off < 8)
                        goto bad_record;
                    b.off += 8;
                    break;
                case FR_T_BOOL:
                    if (b.off >= b.n || b.p[b.off] > 1)
                        goto bad_record;
                    b.off++;
                    break;
                }
            }
        }
        if (b.off != b.n) {
            snprintf(err, FR_ERR_LEN, "corrupt Avro file: a block of %" PRId64 " records has %zu bytes left over", n,
                     b.n - b.off);
            return -EBADMSG;
        }
        c.off += (size_t)size + SYNC_LEN; /* the sync marker was checked by check_container */
        if (c.off > len)
            goto corrupt;
    }
    return 0;
bad_record:
    snprintf(err, FR_ERR_LEN, "corrupt Avro file: record %" PRId64 " does not decode as dataset %s", rec + 1,
             ds->qname);
    return -EBADMSG;
corrupt:
    snprintf(err, FR_ERR_LEN, "corrupt Avro file: framing broken at byte %zu", c.off);
    return -EBADMSG;
}

/* Checks the file's schema against the dataset's columns, naming the first
 * field that differs. */
static int check_schema(const struct fr_dataset *ds, const char *schema, size_t n, char err[FR_ERR_LEN])
{
    json_error_t je;
    json_t *root = json_loadb(schema, n, 0, &je);
    json_t *fields;
    int rc = -EPROTO;

    if (!root || !json_is_object(root) || !(fields = json_object_get(root, "fields")) || !json_is_array(fields)) {
        snprintf(err, FR_ERR_LEN, "the file's schema is not an Avro record schema");
        goto out;
    }
    for (size_t i = 0; i < ds->n_columns || i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *fname = f ? json_string_value(json_object_get(f, "name")) : NULL;
        char *got = NULL;
        char want[160];

        if (i >= ds->n_columns) {
            snprintf(err, FR_ERR_LEN, "schema mismatch: the file has field '%s', which dataset %s does not have",
                     fname ? fname : "?", ds->qname);
            goto out;
        }
        if (!f) {
            snprintf(err, FR_ERR_LEN, "schema mismatch: field '%s' of dataset %s is missing from the file",
                     ds->columns[i].name, ds->qname);
            goto out;
        }
        if (!fname || strcmp(fname, ds->columns[i].name) != 0) {
            snprintf(err, FR_ERR_LEN, "schema mismatch: field %zu of the file is '%s', dataset %s has '%s' there",
                     i + 1, fname ? fname : "?", ds->qname, ds->columns[i].name);
            goto out;
        }
        snprintf(want, sizeof(want), "[\"null\",%s]", avro_type_json(ds->columns[i].type));
        {
            json_t *w = json_loads(want, 0, &je);
            bool same = w && json_equal(w, json_object_get(f, "type"));
            json_decref(w);
            if (!same) {
                got = json_dumps(json_object_get(f, "type"), JSON_COMPACT);
                snprintf(err, FR_ERR_LEN,
                         "schema mismatch: field '%.40s' has type %.40s in the file, dataset %.40s needs %.60s (%s "
                         "column)",
                         fname, got ? got : "?", ds->qname, want, fr_type_name(ds->columns[i].type));
                free(got);
                goto out;
            }
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* Appends a value in COPY text format. */
static void copy_text(struct fr_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\\':
            (void)fr_buf_puts(b, "\\\\");
            break;
        case '\t':
            (void)fr_buf_puts(b, "\\t");
            break;
        case '\n':
            (void)fr_buf_puts(b, "\\n");
            break;
        case '\r':
            (void)fr_buf_puts(b, "\\r");
            break;
        default:
            (void)fr_buf_putc(b, s[i]);
        }
    }
}

/* Decodes every record (avro-c) into COPY text. */
/* Skips the header (magic, metadata map, sync marker) of a container that
 * check_container accepted. */
static void skip_header(struct cur *c)
{
    c->off = 4;
    for (;;) {
        int64_t n, skip;
        const char *k;
        size_t kn;
        if (!get_long(c, &n) || n == 0)
            break;
        if (n < 0) {
            if (!get_long(c, &skip))
                break;
            n = -n;
        }
        for (int64_t i = 0; i < n; i++)
            if (!get_bytes(c, &k, &kn) || !get_bytes(c, &k, &kn))
                return;
    }
    c->off += SYNC_LEN;
}

/* Decodes every record with avro-c (the dataset's own schema, which
 * check_schema found equal to the file's) into COPY text. The records were
 * walked with bounds checks first (check_records). */
static int decode_all(const struct fr_pipeline *p, const struct fr_dataset *ds, const void *avro, size_t len,
                      int64_t expect, struct fr_buf *copy, int64_t *rows, char err[FR_ERR_LEN])
{
    struct fr_buf js;
    avro_schema_t sch = NULL;
    avro_value_iface_t *iface = NULL;
    avro_value_t rec;
    avro_reader_t br = NULL;
    bool have_rec = false;
    struct cur c = {.p = avro, .n = len, .off = 0};
    int64_t n = 0;
    int rc = check_records(ds, avro, len, err);

    if (rc != 0)
        return rc;
    rc = -EBADMSG;
    fr_buf_init(&js, 0);
    schema_json(p, ds, &js);
    if (avro_schema_from_json_length(js.data, js.len, &sch) != 0 || !(iface = avro_generic_class_from_schema(sch)) ||
        avro_generic_value_new(iface, &rec) != 0) {
        snprintf(err, FR_ERR_LEN, "avro: %s", avro_strerror());
        goto out;
    }
    have_rec = true;
    skip_header(&c);
    while (c.off < len) {
        int64_t bn = 0, size = 0;
        (void)get_long(&c, &bn); /* checked by check_container and check_records */
        (void)get_long(&c, &size);
        br = avro_reader_memory((const char *)c.p + c.off, size);
        c.off += (size_t)size + SYNC_LEN;
        for (int64_t r = 0; r < bn; r++) {
            if (!br || avro_value_read(br, &rec) != 0) {
                snprintf(err, FR_ERR_LEN, "corrupt Avro file: record %" PRId64 ": %s", n + 1, avro_strerror());
                goto out;
            }
            if (++n > expect) {
                snprintf(err, FR_ERR_LEN, "corrupt Avro file: more records than its blocks declare");
                goto out;
            }
            for (size_t i = 0; i < ds->n_columns; i++) {
                const struct fr_column *col = &ds->columns[i];
                avro_value_t field, branch;
                int disc = 0;
                char tmp[40];

                if (i)
                    (void)fr_buf_putc(copy, '\t');
                if (avro_value_get_by_index(&rec, i, &field, NULL) != 0 ||
                    avro_value_get_discriminant(&field, &disc) != 0 ||
                    avro_value_get_current_branch(&field, &branch) != 0) {
                    snprintf(err, FR_ERR_LEN, "corrupt Avro file: record %" PRId64 " field %s: %s", n, col->name,
                             avro_strerror());
                    goto out;
                }
                if (disc == 0) {
                    for (size_t k = 0; k < ds->n_key; k++) {
                        if (strcmp(ds->key[k], col->name) == 0) {
                            snprintf(err, FR_ERR_LEN,
                                     "record %" PRId64 ": key column %s is null; a row of dataset %s needs its key",
                                     n, col->name, ds->qname);
                            rc = -EPROTO;
                            goto out;
                        }
                    }
                    (void)fr_buf_puts(copy, "\\N");
                    continue;
                }
                switch (col->type) {
                case FR_T_TEXT:
                case FR_T_NUMERIC:
                case FR_T_JSON: {
                    const char *s = NULL;
                    size_t sz = 0;
                    if (avro_value_get_string(&branch, &s, &sz) != 0)
                        goto bad_field;
                    sz = sz ? sz - 1 : 0;      /* avro-c counts its terminating NUL */
                    if (memchr(s, '\0', sz)) { /* PostgreSQL text cannot hold one: never cut the string there */
                        snprintf(err, FR_ERR_LEN,
                                 "record %" PRId64 " field %s: the string holds a NUL byte, which a %s column "
                                 "cannot store",
                                 n, col->name, fr_type_name(col->type));
                        rc = -EPROTO;
                        goto out;
                    }
                    if (!fr_utf8_valid(s, sz)) { /* Avro strings are UTF-8: a damaged byte */
                        snprintf(err, FR_ERR_LEN, "corrupt Avro file: record %" PRId64 " field %s is not UTF-8", n,
                                 col->name);
                        goto out;
                    }
                    copy_text(copy, s, sz);
                    break;
                }
                case FR_T_INT: {
                    int32_t v;
                    if (avro_value_get_int(&branch, &v) != 0)
                        goto bad_field;
                    (void)fr_buf_printf(copy, "%" PRId32, v);
                    break;
                }
                case FR_T_DATE: {
                    int32_t v;
                    if (avro_value_get_int(&branch, &v) != 0)
                        goto bad_field;
                    if (v < MIN_DAYS || v > MAX_DAYS) {
                        snprintf(err, FR_ERR_LEN,
                                 "record %" PRId64 " field %s: date %" PRId32
                                 " days from 1970-01-01 is outside 0001-01-01..9999-12-31",
                                 n, col->name, v);
                        rc = -EPROTO;
                        goto out;
                    }
                    fr_format_date(v, tmp);
                    (void)fr_buf_puts(copy, tmp);
                    break;
                }
                case FR_T_BIGINT: {
                    int64_t v;
                    if (avro_value_get_long(&branch, &v) != 0)
                        goto bad_field;
                    (void)fr_buf_printf(copy, "%" PRId64, v);
                    break;
                }
                case FR_T_TIMESTAMPTZ: {
                    int64_t v;
                    if (avro_value_get_long(&branch, &v) != 0)
                        goto bad_field;
                    if (v < MIN_US || v > MAX_US) { /* fr_format_timestamp would clamp the year */
                        snprintf(err, FR_ERR_LEN,
                                 "record %" PRId64 " field %s: timestamp %" PRId64
                                 " us from 1970 is outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59.999999Z",
                                 n, col->name, v);
                        rc = -EPROTO;
                        goto out;
                    }
                    fr_format_timestamp(v, tmp);
                    (void)fr_buf_puts(copy, tmp);
                    break;
                }
                case FR_T_FLOAT: {
                    double v;
                    if (avro_value_get_double(&branch, &v) != 0)
                        goto bad_field;
                    if (isnan(v))
                        (void)fr_buf_puts(copy, "NaN");
                    else if (isinf(v))
                        (void)fr_buf_puts(copy, v > 0 ? "Infinity" : "-Infinity");
                    else
                        (void)fr_buf_printf(copy, "%.17g", v);
                    break;
                }
                case FR_T_BOOL: {
                    int v;
                    if (avro_value_get_boolean(&branch, &v) != 0)
                        goto bad_field;
                    (void)fr_buf_putc(copy, v ? 't' : 'f');
                    break;
                }
                }
                continue;
            bad_field:
                snprintf(err, FR_ERR_LEN, "corrupt Avro file: record %" PRId64 " field %s: %s", n, col->name,
                         avro_strerror());
                goto out;
            }
            (void)fr_buf_putc(copy, '\n');
        }
        avro_reader_free(br);
        br = NULL;
    }
    if (n != expect) {
        snprintf(err, FR_ERR_LEN, "corrupt Avro file: %" PRId64 " records decoded, %" PRId64 " declared", n, expect);
        goto out;
    }
    *rows = n;
    rc = 0;
out:
    if (br)
        avro_reader_free(br);
    if (have_rec)
        avro_value_decref(&rec);
    if (iface)
        avro_value_iface_decref(iface);
    if (sch)
        avro_schema_decref(sch);
    fr_buf_deinit(&js);
    return rc;
}

/* The record (1-based) a COPY error names in its context ("COPY t, line
 * N[, column c]: ..."), 0 when it names none. The rest of the context quotes
 * row data and is not used. */
static long copy_error_line(const PGresult *r)
{
    const char *ctx = PQresultErrorField(r, PG_DIAG_CONTEXT);
    const char *l = ctx ? strstr(ctx, ", line ") : NULL;
    return l ? strtol(l + 7, NULL, 10) : 0;
}

/* A failed COPY of a restore: the file's data breaking the table's rules
 * (SQLSTATE class 22 data exception, 23 integrity constraint, 54000
 * program_limit_exceeded: a value too large to index) is -EPROTO with a
 * message of our own naming the record, the column when the server names
 * one, and the rule; the server's text is not passed on, since it quotes row
 * data and constraint names. Anything else is the server's failure: -EIO. */
static int copy_error(const PGresult *r, const struct fr_dataset *ds, char err[FR_ERR_LEN])
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *col = PQresultErrorField(r, PG_DIAG_COLUMN_NAME);
    const char *rule;
    char where[96] = "a record";
    long line = copy_error_line(r);

    if (!state || !(strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 || strcmp(state, "54000") == 0)) {
        const char *m = PQresultErrorMessage(r);
        snprintf(err, FR_ERR_LEN, "COPY into %s failed: %.*s", ds->table, (int)strcspn(m, "\n"), m);
        return -EIO;
    }
    if (strcmp(state, "23505") == 0)
        rule = "its key (or a unique value) is the same as an earlier record's";
    else if (strcmp(state, "23502") == 0)
        rule = "a column that cannot be null is null";
    else if (strcmp(state, "23503") == 0)
        rule = "it refers to a row that does not exist";
    else if (strncmp(state, "23", 2) == 0)
        rule = "it breaks a constraint of the table";
    else if (strcmp(state, "54000") == 0)
        rule = "a value is too large for the table's index (PostgreSQL indexes at most about 2700 bytes)";
    else
        rule = "a value is out of range or invalid for its column type";
    if (line > 0)
        snprintf(where, sizeof(where), "record %ld", line);
    snprintf(err, FR_ERR_LEN, "%s of the file cannot be restored into %s%s%s: %s (SQLSTATE %s); nothing was changed",
             where, ds->qname, col ? ", column " : "", col ? col : "", rule, state);
    return -EPROTO;
}

int fr_backup_restore_buf(const char *conninfo, const struct fr_pipeline *p, const struct fr_dataset *ds,
                          const void *avro, size_t len, int64_t *rows, char err[FR_ERR_LEN])
{
    const char *schema, *dsname;
    size_t schema_len = 0, dsname_len = 0;
    int64_t expect = 0, n = 0;
    struct fr_buf copy, sql;
    PGconn *c = NULL;
    PGresult *r;
    int rc;

    if (len > FR_BACKUP_MAX_BYTES) {
        snprintf(err, FR_ERR_LEN, "Avro file of %zu bytes is over the %zu-byte limit", len, FR_BACKUP_MAX_BYTES);
        return -EFBIG;
    }
    rc = check_container(avro, len, &schema, &schema_len, &dsname, &dsname_len, &expect, err);
    if (rc != 0)
        return rc;
    if (dsname && (dsname_len != strlen(ds->qname) || memcmp(dsname, ds->qname, dsname_len) != 0)) {
        snprintf(err, FR_ERR_LEN, "the file is a backup of dataset %.*s, not of %s",
                 (int)(dsname_len > 80 ? 80 : dsname_len), dsname, ds->qname);
        return -EPROTO;
    }
    rc = check_schema(ds, schema, schema_len, err);
    if (rc != 0)
        return rc;
    fr_buf_init(&copy, 0);
    fr_buf_init(&sql, 0);
    rc = decode_all(p, ds, avro, len, expect, &copy, &n, err);
    if (rc != 0)
        goto out;
    rc = -EIO;
    c = connect_pg(conninfo, err);
    if (!c)
        goto out;
    if (!exec_ok(c, "BEGIN", err))
        goto out;
    (void)fr_buf_puts(&sql, "TRUNCATE ");
    fr_buf_sql_ident(&sql, ds->table);
    if (!exec_ok(c, sql.data, err))
        goto out_rollback;
    fr_buf_reset(&sql);
    (void)fr_buf_puts(&sql, "COPY ");
    fr_buf_sql_ident(&sql, ds->table);
    (void)fr_buf_puts(&sql, " (");
    for (size_t i = 0; i < ds->n_columns; i++) {
        if (i)
            (void)fr_buf_puts(&sql, ", ");
        fr_buf_sql_ident(&sql, ds->columns[i].name);
    }
    (void)fr_buf_puts(&sql, ") FROM STDIN");
    r = PQexec(c, sql.data);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        snprintf(err, FR_ERR_LEN, "COPY into %s refused: %s", ds->table, PQresultErrorMessage(r));
        PQclear(r);
        goto out_rollback;
    }
    PQclear(r);
    for (size_t off = 0; off < copy.len;) {
        size_t chunk = copy.len - off > (1u << 20) ? (1u << 20) : copy.len - off;
        if (PQputCopyData(c, copy.data + off, (int)chunk) != 1) {
            snprintf(err, FR_ERR_LEN, "COPY into %s: %s", ds->table, PQerrorMessage(c));
            goto out_rollback;
        }
        off += chunk;
    }
    if (PQputCopyEnd(c, NULL) != 1) {
        snprintf(err, FR_ERR_LEN, "COPY into %s: %s", ds->table, PQerrorMessage(c));
        goto out_rollback;
    }
    rc = 0;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0)
            rc = copy_error(r, ds, err);
        PQclear(r);
    }
    if (rc != 0)
        goto out_rollback;
    if (!exec_ok(c, "COMMIT", err)) {
        rc = -EIO;
        goto out;
    }
    if (rows)
        *rows = n;
    goto out;
out_rollback:
    if (rc == 0)
        rc = -EIO;
    {
        char ignored[FR_ERR_LEN];
        (void)exec_ok(c, "ROLLBACK", ignored);
    }
out:
    if (c)
        PQfinish(c);
    fr_buf_deinit(&sql);
    fr_buf_deinit(&copy);
    return rc;
}

int fr_backup_restore_file(const char *conninfo, const struct fr_pipeline *p, const struct fr_dataset *ds,
                           const char *path, int64_t *rows, char err[FR_ERR_LEN])
{
    size_t len = 0;
    char ferr[FR_ERR_LEN];
    char *data = fr_read_file(path, FR_BACKUP_MAX_BYTES, &len, ferr);
    int rc;

    if (!data) {
        snprintf(err, FR_ERR_LEN, "%.250s", ferr); /* names the file */
        return -EIO;
    }
    rc = fr_backup_restore_buf(conninfo, p, ds, data, len, rows, err);
    free(data);
    return rc;
}

/* ---- notify ------------------------------------------------------------------------------ */

/* A Redis URL: redis://[:pass@]host[:port][/db], or
 * redis+cluster://[:pass@]host:port,host:port,... (seed nodes of a Redis
 * Cluster, db 0). */
#define NOTIFY_SEEDS 16
struct rurl {
    char host[NOTIFY_SEEDS][256];
    int port[NOTIFY_SEEDS];
    size_t n;
    char pass[256];
    int db;
    bool cluster;
};

static bool parse_rurl(const char *redis_url, struct rurl *u, char err[FR_ERR_LEN])
{
    const char *s = redis_url;
    const char *at, *end;

    memset(u, 0, sizeof(*u));
    if (strncmp(s, "redis://", 8) == 0) {
        s += 8;
    } else if (strncmp(s, "redis+cluster://", 16) == 0) {
        s += 16;
        u->cluster = true;
    } else {
        snprintf(
            err, FR_ERR_LEN,
            "Redis URL '%s' must start with redis:// or redis+cluster://; set FRESHET_REDIS_URL (or --redis-url)",
            redis_url);
        return false;
    }
    end = s + strcspn(s, "/");
    at = memchr(s, '@', (size_t)(end - s));
    if (at) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        const char *pw = colon ? colon + 1 : s;
        snprintf(u->pass, sizeof(u->pass), "%.*s", (int)(at - pw), pw);
        s = at + 1;
    }
    while (s < end && u->n < NOTIFY_SEEDS) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        const char *colon = memchr(s, ':', (size_t)(stop - s));
        size_t hn = (size_t)((colon ? colon : stop) - s);

        snprintf(u->host[u->n], sizeof(u->host[u->n]), "%.*s", (int)(hn ? hn : 9), hn ? s : "127.0.0.1");
        u->port[u->n] = colon ? atoi(colon + 1) : 6379;
        u->n++;
        if (!comma)
            break;
        s = comma + 1;
    }
    if (u->n == 0) {
        snprintf(u->host[0], sizeof(u->host[0]), "127.0.0.1");
        u->port[0] = 6379;
        u->n = 1;
    }
    if (*end == '/' && end[1])
        u->db = atoi(end + 1);
    return true;
}

/* A blocking connection to one node (5 s connect and I/O timeout), after
 * AUTH and SELECT. NULL + err on failure. */
static redisContext *connect_node(const struct rurl *u, const char *host, int port, char err[FR_ERR_LEN])
{
    redisContext *rc_ctx;
    redisReply *rep;
    struct timeval tv = {5, 0};
    int rc = 0;

    rc_ctx = redisConnectWithTimeout(host, port, tv);
    if (!rc_ctx || rc_ctx->err) {
        snprintf(err, FR_ERR_LEN,
                 "cannot connect to Redis %.64s:%d: %.64s; set FRESHET_REDIS_URL (or --redis-url) to the Redis the "
                 "loader uses",
                 host, port, rc_ctx ? rc_ctx->errstr : "out of memory");
        redisFree(rc_ctx);
        return NULL;
    }
    if (redisSetTimeout(rc_ctx, tv) != REDIS_OK) {
        snprintf(err, FR_ERR_LEN, "cannot set a timeout on the Redis connection");
        redisFree(rc_ctx);
        return NULL;
    }
    if (u->pass[0]) {
        rep = redisCommand(rc_ctx, "AUTH %s", u->pass);
        if (!rep || rep->type == REDIS_REPLY_ERROR)
            rc = -EACCES;
        freeReplyObject(rep);
    }
    if (rc == 0 && u->db) {
        rep = redisCommand(rc_ctx, "SELECT %d", u->db);
        if (!rep || rep->type == REDIS_REPLY_ERROR)
            rc = -EINVAL;
        freeReplyObject(rep);
    }
    if (rc != 0) {
        snprintf(err, FR_ERR_LEN, "Redis AUTH/SELECT refused; check FRESHET_REDIS_URL (or --redis-url)");
        redisFree(rc_ctx);
        return NULL;
    }
    return rc_ctx;
}

/* A connection to redis_url: its node, or the first seed of a cluster that
 * answers. */
static redisContext *connect_redis(const char *redis_url, struct rurl *u, char err[FR_ERR_LEN])
{
    if (!parse_rurl(redis_url, u, err))
        return NULL;
    for (size_t i = 0; i < u->n; i++) {
        redisContext *c = connect_node(u, u->host[i], u->port[i], err);
        if (c)
            return c;
    }
    return NULL;
}

/* Sends a command; on a cluster, follows -MOVED (reconnects to the slot's
 * master) and -ASK (ASKING first) up to 5 times. The reply is the caller's
 * (NULL on a connection error, err set). */
static redisReply *command_routed(redisContext **ctx, const struct rurl *u, int argc, const char **argv,
                                  const size_t *lens, char err[FR_ERR_LEN])
{
    for (int hop = 0; hop <= 5; hop++) {
        redisReply *rep = redisCommandArgv(*ctx, argc, argv, lens);
        bool ask;
        char host[256];
        int port = 0;
        const char *sp, *colon;
        redisContext *next;

        if (!rep) {
            snprintf(err, FR_ERR_LEN, "%.200s", (*ctx)->errstr);
            return NULL;
        }
        if (!u->cluster || rep->type != REDIS_REPLY_ERROR ||
            (strncmp(rep->str, "MOVED ", 6) != 0 && strncmp(rep->str, "ASK ", 4) != 0))
            return rep;
        /* "MOVED 3999 127.0.0.1:6381" */
        ask = rep->str[0] == 'A';
        sp = strchr(rep->str + (ask ? 4 : 6), ' ');
        colon = sp ? strrchr(sp, ':') : NULL;
        if (!sp || !colon || colon - sp - 1 <= 0 || colon - sp - 1 >= (long)sizeof(host))
            return rep;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - sp - 1), sp + 1);
        port = atoi(colon + 1);
        freeReplyObject(rep);
        next = connect_node(u, host, port, err);
        if (!next)
            return NULL;
        redisFree(*ctx);
        *ctx = next;
        if (ask) {
            redisReply *a = redisCommand(*ctx, "ASKING");
            freeReplyObject(a);
        }
    }
    snprintf(err, FR_ERR_LEN, "too many cluster redirects");
    return NULL;
}

int fr_backup_redis_check(const char *redis_url, char err[FR_ERR_LEN])
{
    struct rurl u;
    redisContext *rc_ctx = connect_redis(redis_url, &u, err);
    redisReply *rep;
    int rc = 0;

    if (!rc_ctx)
        return -ECONNREFUSED;
    rep = redisCommand(rc_ctx, "PING");
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, FR_ERR_LEN, "Redis does not answer PING: %.100s; check FRESHET_REDIS_URL (or --redis-url)",
                 rep ? rep->str : rc_ctx->errstr);
        rc = -EIO;
    }
    freeReplyObject(rep);
    redisFree(rc_ctx);
    return rc;
}

int fr_backup_notify(const char *redis_url, const struct fr_dataset *ds, char err[FR_ERR_LEN])
{
    redisContext *rc_ctx;
    redisReply *rep;
    fr_batch_builder_t *bb;
    struct fr_buf msg;
    char id[27];
    char *key = NULL;
    struct rurl u;
    int rc = 0;

    rc_ctx = connect_redis(redis_url, &u, err);
    if (!rc_ctx)
        return -ECONNREFUSED;
    fr_ulid(id);
    fr_buf_init(&msg, 0);
    bb = fr_batch_builder_new(ds, "restore", FR_OP_REPLACED);
    if (fr_batch_builder_flush(bb, id, NULL, &msg) != 0) {
        snprintf(err, FR_ERR_LEN, "cannot encode the replaced-table batch");
        rc = -EINVAL;
        goto out;
    }
    key = fr_names_stream(ds->qname);
    {
        const char *argv[] = {"XADD", key, "*", "batch", msg.data, "id", id, "rows", "0"};
        size_t lens[] = {4, strlen(key), 1, 5, msg.len, 2, strlen(id), 4, 1};
        char cerr[FR_ERR_LEN] = "";

        rep = command_routed(&rc_ctx, &u, (int)(sizeof(argv) / sizeof(argv[0])), argv, lens, cerr);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, FR_ERR_LEN, "XADD %.100s failed: %.100s", key, rep ? rep->str : cerr);
            rc = -EIO;
        }
    }
    freeReplyObject(rep);
out:
    free(key);
    fr_batch_builder_free(bb);
    fr_buf_deinit(&msg);
    redisFree(rc_ctx);
    return rc;
}
