/* sqlnames: a small lexer over a route's SQL that reports schema-qualified
 * names and volatile calls (see sqlnames.h). It understands what can hide a
 * name or fake one: comments, string literals, dollar quotes and quoted
 * identifiers; it is not a parser, and needs not be one: an input is a
 * name the pipelines declare, written schema.table. */
#include "sqlnames.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define NAME_MAX_LEN 64 /* PostgreSQL's NAMEDATALEN */

/* Functions whose result changes without any table changing. */
static const char *const volatile_words[] = {
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "random",
    "nextval",
    "currval",
    "gen_random_uuid",
    "txid_current",
};

static bool ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

static bool ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* Reads an identifier at *s (quoted or not) into out; advances *s. */
static bool read_ident(const char **s, char out[NAME_MAX_LEN])
{
    const char *p = *s;
    size_t n = 0;
    if (*p == '"') {
        p++;
        for (;;) {
            if (*p == '\0')
                return false;
            if (*p == '"') {
                if (p[1] != '"')
                    break;
                p++; /* "" is one quote */
            }
            if (n + 1 < NAME_MAX_LEN)
                out[n++] = *p;
            p++;
        }
        p++;
    } else if (ident_start((unsigned char)*p)) {
        while (ident_char((unsigned char)*p)) {
            if (n + 1 < NAME_MAX_LEN)
                out[n++] = (char)tolower((unsigned char)*p);
            p++;
        }
    } else {
        return false;
    }
    out[n] = '\0';
    *s = p;
    return true;
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f')
        p++;
    return p;
}

/* Past a dollar-quoted string starting at p ("$tag$...$tag$"), or NULL
 * when p does not start one. */
static const char *skip_dollar(const char *p)
{
    const char *q = p + 1;
    while (*q && *q != '$' && ident_char((unsigned char)*q))
        q++;
    if (*q != '$')
        return NULL;
    size_t tl = (size_t)(q - p) + 1; /* "$tag$" */
    const char *end;
    for (end = q + 1; *end; end++)
        if (*end == '$' && strncmp(end, p, tl) == 0)
            return end + tl;
    return end;
}

static bool is_volatile(const char *word)
{
    for (size_t i = 0; i < sizeof(volatile_words) / sizeof(volatile_words[0]); i++)
        if (strcmp(word, volatile_words[i]) == 0)
            return true;
    return false;
}

bool fr_sqlnames_scan(const char *sql, fr_sqlnames_cb cb, void *data)
{
    const char *p = sql;
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    bool stable = true;

    while (p && *p) {
        if (p[0] == '-' && p[1] == '-') {
            p = strchr(p, '\n');
            continue;
        }
        if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : NULL;
            continue;
        }
        if (*p == '\'' || ((*p == 'E' || *p == 'e') && p[1] == '\'')) {
            bool esc = *p != '\'';
            p += esc ? 2 : 1;
            while (*p) {
                if (esc && *p == '\\' && p[1]) {
                    p += 2;
                    continue;
                }
                if (*p == '\'') {
                    if (p[1] == '\'') {
                        p += 2;
                        continue;
                    }
                    break;
                }
                p++;
            }
            if (*p)
                p++;
            continue;
        }
        if (*p == '$' && !isdigit((unsigned char)p[1])) {
            const char *e = skip_dollar(p);
            if (e) {
                p = e;
                continue;
            }
            p++;
            continue;
        }
        if (*p == '"' || ident_start((unsigned char)*p)) {
            bool quoted = *p == '"';
            if (!read_ident(&p, a))
                return stable; /* unterminated quote: nothing more to read */
            const char *q = skip_space(p);
            if (*q == '.') {
                q = skip_space(q + 1);
                if ((*q == '"' || ident_start((unsigned char)*q)) && read_ident(&q, b)) {
                    p = q;
                    if (*skip_space(p) == '(')
                        continue; /* schema.function( */
                    if (!cb(a, b, data))
                        return false;
                    continue;
                }
                p = q;
                continue;
            }
            if (!quoted && is_volatile(a))
                stable = false; /* the names after it are still reported */
            continue;
        }
        p++;
    }
    return stable;
}
