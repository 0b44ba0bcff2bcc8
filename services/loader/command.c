/* command: the loader's one-shot commands, run instead of the daemon (the
 * loop does not run, so blocking libpq and hiredis are fine here):
 *   backup  --dataset PIPELINE.NAME --out FILE
 *   restore --dataset PIPELINE.NAME --in FILE
 * Both use common/backup; restore then tells the running loaders
 * (fr_backup_notify) so models, caches and exports follow. They reach
 * PostgreSQL and Redis through FRESHET_DATABASE_URL / FRESHET_REDIS_URL (or
 * --database-url / --redis-url) as the daemon does, give up after 5 s, and
 * restore checks Redis before it touches the table. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "backup.h"
#include "loader_int.h"
#include "log.h"

static const struct fr_dataset *find_dataset(const struct fr_app *app, const char *qname,
                                             const struct fr_pipeline **pp)
{
    for (size_t i = 0; i < app->n_pipelines; i++) {
        const struct fr_pipeline *p = app->pipelines[i];
        for (size_t d = 0; d < p->n_datasets; d++) {
            if (strcmp(p->datasets[d].qname, qname) == 0) {
                *pp = p;
                return &p->datasets[d];
            }
        }
    }
    return NULL;
}

int fr__loader_command(struct fr_app *app, int argc, char **argv)
{
    const char *cmd = argv[0];
    bool backup = strcmp(cmd, "backup") == 0;
    const char *dataset = NULL;
    const char *file = NULL;
    const struct fr_pipeline *p = NULL;
    const struct fr_dataset *ds;
    char err[FR_ERR_LEN];
    int64_t rows = 0;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dataset") == 0 && i + 1 < argc) {
            dataset = argv[++i];
        } else if (strcmp(argv[i], backup ? "--out" : "--in") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else {
            fprintf(stderr,
                    "freshet-loader %s: unknown argument '%s'; usage: freshet-loader %s --dataset "
                    "PIPELINE.NAME %s FILE\n",
                    cmd, argv[i], cmd, backup ? "--out" : "--in");
            return 2;
        }
    }
    if (!dataset || !file) {
        fprintf(stderr, "freshet-loader %s: usage: freshet-loader %s --dataset PIPELINE.NAME %s FILE\n", cmd, cmd,
                backup ? "--out" : "--in");
        return 2;
    }
    ds = find_dataset(app, dataset, &p);
    if (!ds) {
        fprintf(stderr,
                "freshet-loader %s: no dataset '%s' in the loaded pipelines; name it PIPELINE.NAME and check "
                "FRESHET_PIPELINES\n",
                cmd, dataset);
        return 2;
    }
    if (backup) {
        rc = fr_backup_write(app->settings.database_url, p, ds, file, &rows, err);
        if (rc != 0) {
            fprintf(stderr, "freshet-loader backup: %s\n", err);
            return 1;
        }
        fr_info("backup of %s: %" PRId64 " rows written to %s", ds->qname, rows, file);
        return 0;
    }
    if (fr_backup_redis_check(app->settings.redis_url, err) != 0) {
        fprintf(stderr, "freshet-loader restore: %s; %s is unchanged\n", err, ds->table);
        return 1;
    }
    rc = fr_backup_restore_file(app->settings.database_url, p, ds, file, &rows, err);
    if (rc != 0) {
        fprintf(stderr, "freshet-loader restore: %s; %s is unchanged\n", err, ds->table);
        return 1;
    }
    fr_info("restore of %s: %" PRId64 " rows from %s", ds->qname, rows, file);
    if (fr_backup_notify(app->settings.redis_url, ds, err) != 0) {
        fprintf(stderr,
                "freshet-loader restore: the table is restored, but the loaders were not told (%s); restart "
                "freshet-loader to refresh models and caches\n",
                err);
        return 1;
    }
    return 0;
}
