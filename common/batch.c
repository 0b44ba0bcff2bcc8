/* batch: the codec of freshet.Batch. The builder keeps each column as one
 * contiguous byte arena of NUL-terminated values plus offsets and a null
 * bitmap, so a 50000-row batch costs a handful of allocations; flush points
 * the protobuf-c message straight into the arenas and packs it. A decoded
 * batch lives in one bump arena handed to protobuf-c as its allocator, and
 * is released in one go. */
#include "batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "freshet.pb-c.h"

/* ---- builder ---------------------------------------------------------- */

struct bcol {
    char *arena;    /* owned: values, each NUL-terminated */
    size_t len;     /* bytes used in arena */
    size_t cap;     /* bytes allocated in arena */
    size_t *offs;   /* owned: start of each row's value in arena */
    uint8_t *nulls; /* owned: bitmap, bit (row % 8) of byte (row / 8) */
    bool any_null;  /* some row is null: the bitmap goes on the wire */
};

struct fr_batch_builder {
    const struct fr_dataset *ds; /* borrowed */
    char *source;                /* owned */
    enum fr_batch_op op;
    struct bcol *cols; /* owned: one per dataset column */
    size_t n_rows;
    size_t cap_rows; /* rows the offs/nulls/lines arrays hold */
    uint32_t *lines; /* owned: source line per row */
    bool any_line;   /* some row has a line number */
    size_t bytes;    /* running estimate of the packed size */
    char **ptrs;     /* owned: scratch for flush, n_rows * n_columns */
    size_t cap_ptrs;
};

fr_batch_builder_t *fr_batch_builder_new(const struct fr_dataset *ds, const char *source, enum fr_batch_op op)
{
    fr_batch_builder_t *b = fr_xcalloc(1, sizeof(*b));
    b->ds = ds;
    b->source = fr_xstrdup(source ? source : "");
    b->op = op;
    b->cols = fr_xcalloc(ds->n_columns ? ds->n_columns : 1, sizeof(*b->cols));
    return b;
}

void fr_batch_builder_free(fr_batch_builder_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->ds->n_columns; i++) {
        free(b->cols[i].arena);
        free(b->cols[i].offs);
        free(b->cols[i].nulls);
    }
    free(b->cols);
    free(b->lines);
    free(b->ptrs);
    free(b->source);
    free(b);
}

static void grow_rows(fr_batch_builder_t *b)
{
    size_t ncap = b->cap_rows ? b->cap_rows * 2 : 1024;
    for (size_t i = 0; i < b->ds->n_columns; i++) {
        struct bcol *c = &b->cols[i];
        c->offs = fr_xrealloc(c->offs, ncap * sizeof(*c->offs));
        c->nulls = fr_xrealloc(c->nulls, ncap / 8);
        memset(c->nulls + b->cap_rows / 8, 0, (ncap - b->cap_rows) / 8);
    }
    b->lines = fr_xrealloc(b->lines, ncap * sizeof(*b->lines));
    b->cap_rows = ncap;
}

static void col_put(struct bcol *c, const char *v, size_t n)
{
    if (c->cap - c->len < n + 1) {
        size_t ncap = c->cap ? c->cap : 4096;
        while (ncap - c->len < n + 1)
            ncap *= 2;
        c->arena = fr_xrealloc(c->arena, ncap);
        c->cap = ncap;
    }
    if (n)
        memcpy(c->arena + c->len, v, n);
    c->arena[c->len + n] = '\0';
    c->len += n + 1;
}

/* Bytes of a protobuf varint. */
static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

void fr_batch_builder_add(fr_batch_builder_t *b, const char *const *vals, const size_t *lens, const bool *nulls,
                          uint32_t line)
{
    if (b->n_rows == b->cap_rows)
        grow_rows(b);
    size_t r = b->n_rows;
    for (size_t i = 0; i < b->ds->n_columns; i++) {
        struct bcol *c = &b->cols[i];
        c->offs[r] = c->len;
        if (nulls && nulls[i]) {
            c->nulls[r / 8] |= (uint8_t)(1u << (r % 8));
            c->any_null = true;
            col_put(c, "", 0);
            b->bytes += 2;
        } else {
            size_t n = lens[i];
            /* A value stops at its first NUL on the wire (proto string). */
            const char *z = n ? memchr(vals[i], '\0', n) : NULL;
            if (z)
                n = (size_t)(z - vals[i]);
            col_put(c, vals[i], n);
            b->bytes += 1 + varint_len(n) + n;
        }
    }
    b->lines[r] = line;
    if (line)
        b->any_line = true;
    b->bytes += varint_len(line);
    b->n_rows++;
}

size_t fr_batch_builder_rows(const fr_batch_builder_t *b)
{
    return b->n_rows;
}

size_t fr_batch_builder_bytes(const fr_batch_builder_t *b)
{
    return b->bytes + b->n_rows * b->ds->n_columns / 8 + 128;
}

static void builder_reset(fr_batch_builder_t *b)
{
    for (size_t i = 0; i < b->ds->n_columns; i++) {
        struct bcol *c = &b->cols[i];
        c->len = 0;
        if (c->nulls)
            memset(c->nulls, 0, b->cap_rows / 8);
        c->any_null = false;
    }
    b->n_rows = 0;
    b->any_line = false;
    b->bytes = 0;
}

int fr_batch_builder_flush(fr_batch_builder_t *b, const char *id, const struct fr_raw_ref *raw, struct fr_buf *out)
{
    size_t nc = b->ds->n_columns;
    size_t nr = b->n_rows;
    if (!id || !id[0] || strlen(id) >= FR_BATCH_ID_LEN)
        return -EINVAL;
    if (nr > UINT32_MAX)
        return -E2BIG;

    if (!b->ptrs || b->cap_ptrs < nr * nc) { /* never NULL: an empty flush still indexes it */
        free(b->ptrs);
        b->ptrs = fr_xmalloc((nr * nc + 1) * sizeof(*b->ptrs));
        b->cap_ptrs = nr * nc;
    }
    Freshet__Column *cols = fr_xcalloc(nc ? nc : 1, sizeof(*cols));
    Freshet__Column **colp = fr_xcalloc(nc ? nc : 1, sizeof(*colp));
    for (size_t i = 0; i < nc; i++) {
        struct bcol *c = &b->cols[i];
        const struct fr_column *dc = &b->ds->columns[i];
        char **vp = b->ptrs + i * nr;
        for (size_t r = 0; r < nr; r++)
            vp[r] = c->arena + c->offs[r];
        freshet__column__init(&cols[i]);
        cols[i].name = dc->name;
        cols[i].type = (Freshet__ColumnType)dc->type;
        cols[i].n_values = nr;
        cols[i].values = vp;
        if (c->any_null) {
            cols[i].nulls.data = c->nulls;
            cols[i].nulls.len = (nr + 7) / 8;
        }
        colp[i] = &cols[i];
    }

    Freshet__Batch msg;
    freshet__batch__init(&msg);
    msg.id = (char *)id;
    msg.dataset = b->ds->qname;
    msg.source = b->source;
    msg.schema_version = b->ds->schema_version;
    msg.produced_at_us = fr_wall_us();
    msg.op = (Freshet__Op)b->op; /* enum fr_batch_op mirrors freshet.Op */
    msg.n_rows = (uint32_t)nr;
    msg.n_columns = nc;
    msg.columns = colp;
    Freshet__RawRef rr;
    if (raw) {
        freshet__raw_ref__init(&rr);
        rr.path = (char *)(raw->path ? raw->path : "");
        rr.sha256 = (char *)(raw->sha256 ? raw->sha256 : "");
        rr.size = raw->size;
        msg.raw = &rr;
    }
    if (b->any_line) {
        msg.n_lines = nr;
        msg.lines = b->lines;
    }

    int rc = 0;
    size_t sz = freshet__batch__get_packed_size(&msg);
    if (sz > FR_BATCH_MAX_BYTES) {
        rc = -EMSGSIZE;
        goto out_free_cols;
    }
    rc = fr_buf_reserve(out, sz);
    if (rc < 0)
        goto out_free_cols;
    size_t got = freshet__batch__pack(&msg, (uint8_t *)out->data + out->len);
    out->len += got;
    out->data[out->len] = '\0';
    builder_reset(b);

out_free_cols:
    free(colp);
    free(cols);
    return rc;
}

/* ---- decoded batch ---------------------------------------------------- */

/* A bump arena that serves protobuf-c's allocations during unpack; its free
 * is a no-op and the whole arena goes at once. */
struct chunk {
    struct chunk *next; /* owned */
    size_t used;        /* bytes handed out from data */
    size_t cap;         /* bytes in data */
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct chunk *head; /* owned: newest first */
};

static void *arena_alloc(void *ad, size_t size)
{
    struct arena *a = ad;
    /* Every C type's size is a multiple of its alignment, so the largest
     * power of two dividing size (max 16) is enough. */
    size_t align = 16;
    while (align > 1 && (size & (align - 1)))
        align >>= 1;
    struct chunk *c = a->head;
    if (c) {
        size_t at = (c->used + align - 1) & ~(align - 1);
        if (at <= c->cap && c->cap - at >= size) {
            c->used = at + size;
            return c->data + at;
        }
    }
    size_t cap = 64 * 1024;
    if (c && c->cap < (8u << 20))
        cap = c->cap * 2;
    if (cap < size)
        cap = size;
    struct chunk *n = fr_xmalloc(sizeof(*n) + cap);
    n->cap = cap;
    n->used = size;
    n->next = a->head;
    a->head = n;
    return n->data;
}

static void arena_free_ptr(void *ad, void *p)
{
    (void)ad;
    (void)p;
}

static void arena_release(struct arena *a)
{
    struct chunk *c = a->head;
    while (c) {
        struct chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}

struct fr_batch {
    struct arena arena;  /* owned: everything msg points to */
    Freshet__Batch *msg; /* in arena */
};

static bool bit_is_set(const ProtobufCBinaryData *bm, size_t row)
{
    return bm->len && (bm->data[row / 8] >> (row % 8)) & 1u;
}

static bool validate(const Freshet__Batch *m, char err[FR_ERR_LEN])
{
    if (!m->id || !m->id[0]) {
        snprintf(err, FR_ERR_LEN, "batch has no id");
        return false;
    }
    if (strlen(m->id) >= FR_BATCH_ID_LEN) {
        snprintf(err, FR_ERR_LEN, "batch id is longer than %d bytes", FR_BATCH_ID_LEN - 1);
        return false;
    }
    if (!m->dataset || !m->dataset[0]) {
        snprintf(err, FR_ERR_LEN, "batch %s has no dataset", m->id);
        return false;
    }
    if ((int)m->op < FRESHET__OP__OP_UPSERT || (int)m->op > FRESHET__OP__OP_REPLACED) {
        snprintf(err, FR_ERR_LEN, "batch %s has unknown op %d", m->id, (int)m->op);
        return false;
    }
    if (m->n_columns > FR_BATCH_MAX_COLS) {
        snprintf(err, FR_ERR_LEN, "batch %s has %zu columns, more than %u", m->id, m->n_columns,
                 (unsigned)FR_BATCH_MAX_COLS);
        return false;
    }
    if (m->n_rows && !m->n_columns) {
        snprintf(err, FR_ERR_LEN, "batch %s has %u rows but no columns", m->id, m->n_rows);
        return false;
    }
    if (m->n_lines != 0 && m->n_lines != m->n_rows) {
        snprintf(err, FR_ERR_LEN, "batch %s has %zu line numbers for %u rows", m->id, m->n_lines, m->n_rows);
        return false;
    }
    size_t bm_len = ((size_t)m->n_rows + 7) / 8;
    for (size_t i = 0; i < m->n_columns; i++) {
        const Freshet__Column *c = m->columns[i];
        if (!c->name || !c->name[0]) {
            snprintf(err, FR_ERR_LEN, "batch %s: column %zu has no name", m->id, i);
            return false;
        }
        if ((int)c->type < FRESHET__COLUMN_TYPE__TYPE_TEXT || (int)c->type > FRESHET__COLUMN_TYPE__TYPE_JSON) {
            snprintf(err, FR_ERR_LEN, "batch %s: column %.64s has unknown type %d", m->id, c->name, (int)c->type);
            return false;
        }
        if (c->n_values != m->n_rows) {
            snprintf(err, FR_ERR_LEN, "batch %s: column %.64s has %zu values for %u rows", m->id, c->name,
                     c->n_values, m->n_rows);
            return false;
        }
        if (c->nulls.len != 0 && c->nulls.len != bm_len) {
            snprintf(err, FR_ERR_LEN, "batch %s: column %.64s has a %zu-byte null bitmap for %u rows", m->id, c->name,
                     c->nulls.len, m->n_rows);
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(m->columns[j]->name, c->name) == 0) {
                snprintf(err, FR_ERR_LEN, "batch %s: column %.64s appears twice", m->id, c->name);
                return false;
            }
        }
    }
    return true;
}

fr_batch_t *fr_batch_decode(const void *p, size_t n, char err[FR_ERR_LEN])
{
    if (n > FR_BATCH_MAX_BYTES) {
        snprintf(err, FR_ERR_LEN, "batch of %zu bytes is larger than the %u-byte limit", n,
                 (unsigned)FR_BATCH_MAX_BYTES);
        return NULL;
    }
    fr_batch_t *b = fr_xcalloc(1, sizeof(*b));
    ProtobufCAllocator alloc = {
        .alloc = arena_alloc,
        .free = arena_free_ptr,
        .allocator_data = &b->arena,
    };
    b->msg = freshet__batch__unpack(&alloc, n, p);
    if (!b->msg) {
        snprintf(err, FR_ERR_LEN, "batch of %zu bytes is not a valid freshet.Batch message", n);
        goto out_free;
    }
    if (!validate(b->msg, err))
        goto out_free;
    return b;

out_free:
    arena_release(&b->arena);
    free(b);
    return NULL;
}

void fr_batch_free(fr_batch_t *b)
{
    if (!b)
        return;
    arena_release(&b->arena);
    free(b);
}

const char *fr_batch_id(const fr_batch_t *b)
{
    return b->msg->id;
}

const char *fr_batch_dataset(const fr_batch_t *b)
{
    return b->msg->dataset;
}

const char *fr_batch_source(const fr_batch_t *b)
{
    return b->msg->source ? b->msg->source : "";
}

enum fr_batch_op fr_batch_op(const fr_batch_t *b)
{
    return (enum fr_batch_op)b->msg->op; /* checked by decode */
}

int64_t fr_batch_produced_at_us(const fr_batch_t *b)
{
    return b->msg->produced_at_us;
}

uint32_t fr_batch_schema_version(const fr_batch_t *b)
{
    return b->msg->schema_version;
}

size_t fr_batch_rows(const fr_batch_t *b)
{
    return b->msg->n_rows;
}

size_t fr_batch_cols(const fr_batch_t *b)
{
    return b->msg->n_columns;
}

const char *fr_batch_col_name(const fr_batch_t *b, size_t col)
{
    if (col >= b->msg->n_columns)
        return NULL;
    return b->msg->columns[col]->name;
}

enum fr_type fr_batch_col_type(const fr_batch_t *b, size_t col)
{
    if (col >= b->msg->n_columns)
        return FR_T_TEXT;
    return (enum fr_type)b->msg->columns[col]->type;
}

const char *fr_batch_value(const fr_batch_t *b, size_t col, size_t row, size_t *len)
{
    if (col >= b->msg->n_columns || row >= b->msg->n_rows) {
        if (len)
            *len = 0;
        return NULL;
    }
    const Freshet__Column *c = b->msg->columns[col];
    if (bit_is_set(&c->nulls, row)) {
        if (len)
            *len = 0;
        return NULL;
    }
    const char *v = c->values[row];
    if (len)
        *len = strlen(v);
    return v;
}

uint32_t fr_batch_line(const fr_batch_t *b, size_t row)
{
    if (row >= b->msg->n_lines)
        return 0;
    return b->msg->lines[row];
}

const char *fr_batch_raw_path(const fr_batch_t *b)
{
    if (!b->msg->raw || !b->msg->raw->path)
        return "";
    return b->msg->raw->path;
}

const char *fr_batch_raw_sha256(const fr_batch_t *b)
{
    if (!b->msg->raw || !b->msg->raw->sha256)
        return "";
    return b->msg->raw->sha256;
}

uint64_t fr_batch_raw_size(const fr_batch_t *b)
{
    return b->msg->raw ? b->msg->raw->size : 0;
}

/* Appends v[0..n) escaped for COPY text into out, which has room for 2n. */
static char *copy_escape(char *o, const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        switch (c) {
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        default:
            *o++ = c;
        }
    }
    return o;
}

int fr_batch_copy_text(const fr_batch_t *b, size_t from, size_t to, struct fr_buf *out)
{
    const Freshet__Batch *m = b->msg;
    if (from > to || to > m->n_rows)
        return -EINVAL;
    size_t start_len = out->len;
    for (size_t r = from; r < to; r++) {
        for (size_t c = 0; c < m->n_columns; c++) {
            const Freshet__Column *col = m->columns[c];
            const char *v = col->values[r];
            bool is_null = bit_is_set(&col->nulls, r);
            size_t n = is_null ? 0 : strlen(v);
            /* worst case: every byte escaped, plus the separator */
            int rc = fr_buf_reserve(out, (is_null ? 2 : 2 * n) + 1);
            if (rc < 0) {
                out->len = start_len;
                if (out->data)
                    out->data[out->len] = '\0';
                return rc;
            }
            char *o = out->data + out->len;
            if (is_null) {
                *o++ = '\\';
                *o++ = 'N';
            } else {
                o = copy_escape(o, v, n);
            }
            *o++ = c + 1 < m->n_columns ? '\t' : '\n';
            out->len = (size_t)(o - out->data);
        }
        if (m->n_columns == 0) {
            int rc = fr_buf_putc(out, '\n');
            if (rc < 0)
                return rc;
        }
    }
    if (out->data)
        out->data[out->len] = '\0';
    return 0;
}
