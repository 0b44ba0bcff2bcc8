/* jpath: compiles the small JSON path language of jpath.h into a list of
 * steps and walks a jansson tree with it. Input is untrusted config text
 * (and fuzzed): every length is bounded before use. */
#include "jpath.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct step {
    char *key; /* owned: object key, NULL for an index step */
    size_t key_len;
    long long idx; /* array index (negative from the end) */
};

struct fr_jpath {
    char *text; /* owned: the path as written */
    struct step steps[FR_JPATH_MAX_STEPS];
    size_t n_steps;
};

static bool failf(char *err, size_t pos, const char *msg)
{
    snprintf(err, FR_ERR_LEN, "position %zu: %s", pos + 1, msg);
    return false;
}

static bool add_key(fr_jpath_t *p, const char *k, size_t n, size_t pos, char *err)
{
    if (p->n_steps >= FR_JPATH_MAX_STEPS)
        return failf(err, pos, "too many steps (at most 32); shorten the path");
    if (n == 0)
        return failf(err, pos, "empty key; write .name or ['name']");
    p->steps[p->n_steps].key = fr_xmemdup(k, n);
    p->steps[p->n_steps].key_len = n;
    p->n_steps++;
    return true;
}

/* A quoted key inside [...]: s[*i] is the quote. */
static bool quoted_key(fr_jpath_t *p, const char *s, size_t n, size_t *i, char *err)
{
    char q = s[*i];
    size_t start = *i;
    struct fr_buf k;
    bool ok;

    fr_buf_init(&k, FR_JPATH_MAX_LEN);
    for ((*i)++; *i < n && s[*i] != q; (*i)++) {
        char c = s[*i];
        if (c == '\\') {
            if (*i + 1 >= n || (s[*i + 1] != q && s[*i + 1] != '\\')) {
                fr_buf_deinit(&k);
                return failf(err, *i, "bad escape in quoted key; only \\\\ and an escaped quote are allowed");
            }
            c = s[++(*i)];
        }
        (void)fr_buf_putc(&k, c);
    }
    if (*i >= n) {
        fr_buf_deinit(&k);
        return failf(err, start, "unterminated quoted key; close it with the same quote and ]");
    }
    (*i)++; /* closing quote */
    if (*i >= n || s[*i] != ']') {
        fr_buf_deinit(&k);
        return failf(err, *i, "expected ] after the quoted key");
    }
    (*i)++;
    ok = add_key(p, k.data ? k.data : "", k.len, start, err);
    fr_buf_deinit(&k);
    return ok;
}

static bool index_step(fr_jpath_t *p, const char *s, size_t n, size_t *i, char *err)
{
    size_t start = *i;
    bool neg = false;
    long long v = 0;
    size_t digits = 0;

    if (*i < n && s[*i] == '-') {
        neg = true;
        (*i)++;
    }
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        if (++digits > 9)
            return failf(err, start, "array index too large (at most 9 digits)");
        v = v * 10 + (s[*i] - '0');
        (*i)++;
    }
    if (digits == 0)
        return failf(err, start, "expected an array index or a quoted key inside [ ]; e.g. [0] or ['a b']");
    if (*i >= n || s[*i] != ']')
        return failf(err, *i, "expected ] after the array index");
    (*i)++;
    if (p->n_steps >= FR_JPATH_MAX_STEPS)
        return failf(err, start, "too many steps (at most 32); shorten the path");
    p->steps[p->n_steps].key = NULL;
    p->steps[p->n_steps].idx = neg ? -v : v;
    p->n_steps++;
    return true;
}

fr_jpath_t *fr_jpath_compile(const char *s, size_t n, char err[FR_ERR_LEN])
{
    fr_jpath_t *p;
    size_t i = 1;

    if (n > FR_JPATH_MAX_LEN) {
        snprintf(err, FR_ERR_LEN, "path longer than %u bytes; shorten it", FR_JPATH_MAX_LEN);
        return NULL;
    }
    if (n == 0 || s[0] != '$') {
        snprintf(err, FR_ERR_LEN, "a JSON path starts with $; write e.g. $.items or $[0]");
        return NULL;
    }
    p = fr_xcalloc(1, sizeof(*p));
    p->text = fr_xstrndup(s, n);
    while (i < n) {
        if (s[i] == '.') {
            size_t start = ++i;
            while (i < n && s[i] != '.' && s[i] != '[') {
                if (s[i] == ']' || s[i] == '\'' || s[i] == '"' || s[i] == ' ' || s[i] == '\0') {
                    failf(err, i, "unexpected character in a key; quote such keys: ['key']");
                    goto fail;
                }
                i++;
            }
            if (!add_key(p, s + start, i - start, start, err))
                goto fail;
        } else if (s[i] == '[') {
            i++;
            if (i < n && (s[i] == '\'' || s[i] == '"')) {
                if (!quoted_key(p, s, n, &i, err))
                    goto fail;
            } else if (!index_step(p, s, n, &i, err)) {
                goto fail;
            }
        } else {
            failf(err, i, "expected . or [ ; write e.g. $.a.b, $[0] or $['a b']");
            goto fail;
        }
    }
    return p;
fail:
    fr_jpath_free(p);
    return NULL;
}

void fr_jpath_free(fr_jpath_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_steps; i++)
        free(p->steps[i].key);
    free(p->text);
    free(p);
}

json_t *fr_jpath_get(const fr_jpath_t *p, const json_t *root)
{
    json_t *v = (json_t *)root;

    for (size_t i = 0; v != NULL && i < p->n_steps; i++) {
        const struct step *st = &p->steps[i];
        if (st->key) {
            v = json_is_object(v) ? json_object_getn(v, st->key, st->key_len) : NULL;
        } else if (json_is_array(v)) {
            long long size = (long long)json_array_size(v);
            long long k = st->idx < 0 ? size + st->idx : st->idx;
            v = k >= 0 && k < size ? json_array_get(v, (size_t)k) : NULL;
        } else {
            v = NULL;
        }
    }
    return v;
}

const char *fr_jpath_text(const fr_jpath_t *p)
{
    return p->text;
}

size_t fr_jpath_steps(const fr_jpath_t *p)
{
    return p->n_steps;
}
