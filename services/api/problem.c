/* problem: error bodies of the api (see problem.h). */
#include "problem.h"

#include <string.h>

void fr_problem_item(struct fr_buf *b, bool first, const char *where, const char *name, long idx, const char *field,
                     const char *msg, size_t msg_len, const char *type)
{
    if (!first)
        (void)fr_buf_putc(b, ',');
    (void)fr_buf_puts(b, "{\"loc\":[");
    (void)fr_buf_json_str(b, where, strlen(where));
    if (name) {
        (void)fr_buf_putc(b, ',');
        (void)fr_buf_json_str(b, name, strlen(name));
    }
    if (idx != FR_PROBLEM_NO_INDEX)
        (void)fr_buf_printf(b, ",%ld", idx);
    if (field) {
        (void)fr_buf_putc(b, ',');
        (void)fr_buf_json_str(b, field, strlen(field));
    }
    (void)fr_buf_puts(b, "],\"msg\":");
    (void)fr_buf_json_str(b, msg, msg_len);
    (void)fr_buf_puts(b, ",\"type\":");
    (void)fr_buf_json_str(b, type, strlen(type));
    (void)fr_buf_putc(b, '}');
}

void fr_problem_begin(struct fr_problem *x, struct fr_buf *b)
{
    x->b = b;
    x->n = 0;
    fr_buf_reset(b);
    (void)fr_buf_puts(b, "{\"detail\":[");
}

void fr_problem_add(struct fr_problem *x, const char *where, const char *name, long idx, const char *msg,
                    const char *type)
{
    fr_problem_item(x->b, x->n++ == 0, where, name, idx, NULL, msg, strlen(msg), type);
}

void fr_problem_end(struct fr_problem *x)
{
    (void)fr_buf_puts(x->b, "]}");
}

void fr_problem_list(struct fr_buf *out, const char *items, size_t len)
{
    fr_buf_reset(out);
    (void)fr_buf_puts(out, "{\"detail\":[");
    (void)fr_buf_append(out, items, len);
    (void)fr_buf_puts(out, "]}");
}

void fr_problem_one(struct fr_buf *out, const char *where, const char *name, const char *msg, const char *type)
{
    struct fr_problem x;
    fr_problem_begin(&x, out);
    fr_problem_add(&x, where, name, FR_PROBLEM_NO_INDEX, msg, type);
    fr_problem_end(&x);
}

void fr_problem_detail(struct fr_buf *out, const char *msg, size_t len)
{
    fr_buf_reset(out);
    (void)fr_buf_puts(out, "{\"detail\":");
    (void)fr_buf_json_str(out, msg, len);
    (void)fr_buf_putc(out, '}');
}
