/* config_int: the YAML helpers of config.c, shared with the files that parse
 * one section each (config_http.c: http_json sources and schedules;
 * config_route.c: routes). Not for daemons: they see only config.h. */
#ifndef FR_CONFIG_INT_H
#define FR_CONFIG_INT_H

#include <yaml.h>

#include "config.h"

struct fr_cfg {
    yaml_document_t *doc; /* borrowed */
    const char *file;     /* borrowed: file name used in messages */
    char *err;            /* borrowed: FR_ERR_LEN bytes */
};

/* Fills c->err with "file:line:col: message" and returns false. */
bool fr_cfg_fail_at(struct fr_cfg *c, const yaml_mark_t *m, const char *fmt, ...) FR_PRINTF(3, 4);
#define fr_cfg_fail(c, node, ...) fr_cfg_fail_at((c), (node) ? &(node)->start_mark : NULL, __VA_ARGS__)

yaml_node_t *fr_cfg_node_at(struct fr_cfg *c, int idx);
bool fr_cfg_is_ident(const char *s); /* [a-z_][a-z0-9_]* */
bool fr_cfg_is_null(const yaml_node_t *n);
/* Scalars, ${VAR} substituted. out is owned by the caller on success. */
bool fr_cfg_get_str(struct fr_cfg *c, const yaml_node_t *n, const char *what, char **out);
bool fr_cfg_get_ident(struct fr_cfg *c, const yaml_node_t *n, const char *what, char **out);
bool fr_cfg_get_bool(struct fr_cfg *c, const yaml_node_t *n, const char *what, bool *out);
bool fr_cfg_get_u32(struct fr_cfg *c, const yaml_node_t *n, const char *what, uint32_t min, uint32_t max,
                    uint32_t *out);
/* A list of scalars (or one scalar = a list of one). */
bool fr_cfg_get_str_list(struct fr_cfg *c, const yaml_node_t *n, const char *what, bool idents, char ***out,
                         size_t *count);
size_t fr_cfg_map_len(const yaml_node_t *n);
const char *fr_cfg_scalar_of(const yaml_node_t *n); /* NULL unless a scalar */
/* n must be a mapping whose keys are all in valid[] (NULL-terminated). */
bool fr_cfg_check_map(struct fr_cfg *c, const yaml_node_t *n, const char *what, const char *const *valid);
yaml_node_t *fr_cfg_map_get(struct fr_cfg *c, const yaml_node_t *n, const char *key);
bool fr_cfg_check_named_map(struct fr_cfg *c, const yaml_node_t *n, const char *what);
bool fr_cfg_parse_columns(struct fr_cfg *c, const yaml_node_t *n, const char *owner, struct fr_column **out,
                          size_t *count);
/* Checks that every name in `names` is a column; fills idx when not NULL. */
bool fr_cfg_check_key_columns(struct fr_cfg *c, const yaml_node_t *n, const char *owner, char **names, size_t count,
                              const struct fr_column *cols, size_t n_cols, int *idx);
void fr_cfg_free_strv(char **v, size_t n);
void fr_cfg_free_columns(struct fr_column *c, size_t n);

/* Section parsers living in their own files. Each is called with the
 * section's (or entry's) node and owns what it adds to the pipeline. */
bool fr_cfg_parse_http_source(struct fr_cfg *c, struct fr_pipeline *p, struct fr_source *s, const yaml_node_t *n);
void fr_http_source_free(struct fr_http_source *h);
/* config_model.c: one entry of models:, then (all parsed) inputs resolved,
 * cycles refused and the models put in dependency order. */
bool fr_cfg_parse_model(struct fr_cfg *c, struct fr_pipeline *p, const char *name, const yaml_node_t *n,
                        struct fr_model *m);
bool fr_cfg_check_models(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *root);
void fr_cfg_free_model(struct fr_model *m);
bool fr_cfg_parse_routes(struct fr_cfg *c, struct fr_pipeline *p, const yaml_node_t *n);
void fr_routes_free(struct fr_route *r, size_t n);

#endif
