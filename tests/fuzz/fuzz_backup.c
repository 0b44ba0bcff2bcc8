/* libFuzzer target for the restore side of common/backup (an Avro body is
 * what POST /admin/restore/{dataset} receives): the container framing walk,
 * the schema check and, for files that pass both, avro-c's decoding of every
 * record into COPY text. Nothing here connects to a database. */
#include <stddef.h>
#include <stdint.h>

#include "../../common/backup.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fr_column g_cols[] = {
    {.name = (char *)"id", .type = FR_T_BIGINT},      {.name = (char *)"t", .type = FR_T_TEXT},
    {.name = (char *)"i", .type = FR_T_INT},          {.name = (char *)"f", .type = FR_T_FLOAT},
    {.name = (char *)"n", .type = FR_T_NUMERIC},      {.name = (char *)"b", .type = FR_T_BOOL},
    {.name = (char *)"ts", .type = FR_T_TIMESTAMPTZ}, {.name = (char *)"d", .type = FR_T_DATE},
    {.name = (char *)"j", .type = FR_T_JSON},
};
static struct fr_pipeline g_p = {.name = (char *)"semtest"};
static struct fr_dataset g_ds = {
    .name = (char *)"alltypes",
    .qname = (char *)"semtest.alltypes",
    .table = (char *)"semtest.alltypes",
    .columns = g_cols,
    .n_columns = sizeof(g_cols) / sizeof(g_cols[0]),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *schema, *ds;
    size_t sl = 0, dl = 0;
    int64_t recs = 0, rows = 0;
    char err[FR_ERR_LEN];
    struct fr_buf copy;

    err[0] = '\0';
    if (check_container(data, size, &schema, &sl, &ds, &dl, &recs, err) != 0) {
        if (!err[0])
            __builtin_trap();
        return 0;
    }
    if (recs > 100000 || check_schema(&g_ds, schema, sl, err) != 0)
        return 0;
    fr_buf_init(&copy, 0);
    if (decode_all(&g_p, &g_ds, data, size, recs, &copy, &rows, err) == 0 && rows != recs)
        __builtin_trap();
    fr_buf_deinit(&copy);
    return 0;
}
