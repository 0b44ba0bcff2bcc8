/* parse internals shared by parse.c, parse_ndjson.c, their tests, the fuzz
 * target and the benchmark: the NDJSON line scanner that reads one object
 * without building a jansson DOM. */
#ifndef FR_PARSE_INT_H
#define FR_PARSE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parse.h"
#include "util.h"

enum fr__nd_kind {
    FR__ND_NULL = 0,
    FR__ND_FALSE,
    FR__ND_TRUE,
    FR__ND_INT,    /* no fraction nor exponent; within int64 */
    FR__ND_REAL,   /* a fraction or an exponent; finite as a double */
    FR__ND_STRING, /* str/str_len: unescaped, valid UTF-8, no NUL */
    FR__ND_OBJECT,
    FR__ND_ARRAY,
};

/* One top-level member of the object on a line. Pointers are borrowed from
 * the line or the scanner's scratch, valid until the next scan. */
struct fr__nd_member {
    const char *key; /* unescaped, key_len bytes (no NUL inside) */
    size_t key_len;
    enum fr__nd_kind kind;
    const char *raw; /* the value as written in the line */
    size_t raw_len;
    const char *str; /* FR__ND_STRING: the unescaped text */
    size_t str_len;
    size_t key_off;      /* while scanning: key in the line or scratch */
    size_t str_off;      /* while scanning: str in the line or scratch */
    bool key_in_scratch; /* the key had escapes */
    bool str_in_scratch; /* the string had escapes */
};

struct fr__nd_key; /* a key of an object being scanned (parse_ndjson.c) */

struct fr__nd_scan {
    struct fr_buf scratch;   /* owned: unescaped strings */
    struct fr__nd_member *m; /* owned: members of the last line, in order */
    size_t n_m;              /* members in m */
    size_t cap_m;            /* entries allocated in m */
    struct fr__nd_key *keys; /* owned: keys of the open objects (duplicate check) */
    size_t n_keys;           /* entries used in keys */
    size_t cap_keys;         /* entries allocated in keys */
};

void fr__nd_scan_init(struct fr__nd_scan *s);
void fr__nd_scan_deinit(struct fr__nd_scan *s);
/* Scans line[0..n) as one JSON object. True only when jansson's
 * json_loadb(JSON_REJECT_DUPLICATES) would accept the line as an object
 * (no duplicate key at any depth, integers within int64, reals finite,
 * strings valid UTF-8 without \u0000 nor lone surrogates, only JSON white
 * space); s->m then holds its members. False for anything else, including
 * valid input the scanner leaves to jansson (nesting deeper than 64, an
 * object of more than 512 keys): the caller then parses the line with
 * jansson, which gives the exact same rows and error reasons. */
bool fr__nd_scan(struct fr__nd_scan *s, const char *line, size_t n);

/* Tests and the benchmark: true makes the parser read NDJSON lines with
 * jansson only (the reference path the scanner must agree with). */
void fr__parser_set_dom(fr_parser_t *p, bool dom);

#endif
