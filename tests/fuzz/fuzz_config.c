/* libFuzzer target for the pipeline YAML parser: feeds arbitrary bytes to
 * fr_pipeline_parse (the production entry point under fr_pipeline_load).
 * SQL paths resolve under a directory that does not exist, so models fail
 * cleanly; everything else (datasets, sources, caches, ${VAR} substitution,
 * error formatting) is exercised. Seeds: tests/fuzz/corpus/config/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[FR_ERR_LEN];
    err[0] = '\0';
    struct fr_pipeline *p = fr_pipeline_parse((const char *)data, size, "fuzz/pipeline.yaml", "/nonexistent", err);
    if (p) {
        /* touch the result so lifetimes are checked by ASan */
        for (size_t i = 0; i < p->n_datasets; i++)
            (void)fr_pipeline_dataset(p, p->datasets[i].name);
        for (size_t i = 0; i < p->n_caches; i++)
            (void)fr_pipeline_cache(p, p->caches[i].name);
        fr_pipeline_free(p);
    } else if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0') {
        __builtin_trap(); /* every failure must produce a terminated message */
    }
    return 0;
}
