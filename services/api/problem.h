/* problem: the api's error bodies, built in one place: {"detail": "msg"}
 * and FastAPI's 422 list {"detail": [{"loc": [...], "msg": ..., "type":
 * ...}]} (loc: where ("query", "path", "body"), then the parameter or
 * member name, a row or item index, a column). Every handler of the api
 * (router.c, engine.c, params.c, sqlroute.c, crud.c, admin.c, routes.c,
 * push.c, idem.c) answers its errors through these. */
#ifndef FR_API_PROBLEM_H
#define FR_API_PROBLEM_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define FR_PROBLEM_NO_INDEX (-1L)

/* Appends one item of a 422 list to b (a ',' first unless first): loc is
 * [where, name, idx, field], leaving out a NULL name or field and an idx of
 * FR_PROBLEM_NO_INDEX. msg[0..msg_len) is escaped; type is a short ASCII
 * word. */
void fr_problem_item(struct fr_buf *b, bool first, const char *where, const char *name, long idx, const char *field,
                     const char *msg, size_t msg_len, const char *type);

/* A 422 list built in b (borrowed): begin resets b, add appends an item,
 * end closes the body. n counts the items (0: nothing to answer). */
struct fr_problem {
    struct fr_buf *b; /* borrowed */
    size_t n;         /* items so far */
};
void fr_problem_begin(struct fr_problem *x, struct fr_buf *b);
void fr_problem_add(struct fr_problem *x, const char *where, const char *name, long idx, const char *msg,
                    const char *type);
void fr_problem_end(struct fr_problem *x);

/* out (reset) = {"detail":[items[0..len)]}: items as fr_problem_item wrote them. */
void fr_problem_list(struct fr_buf *out, const char *items, size_t len);
/* out (reset) = a 422 body of one item, loc [where, name] (name may be NULL). */
void fr_problem_one(struct fr_buf *out, const char *where, const char *name, const char *msg, const char *type);
/* out (reset) = {"detail":"msg"}. */
void fr_problem_detail(struct fr_buf *out, const char *msg, size_t len);

#endif
