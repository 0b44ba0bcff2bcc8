/* libFuzzer target for fr_batch_decode, the loader's entry point for bytes
 * read from the Redis stream: whatever decodes must be safe to read in full
 * and to render as COPY text. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[FR_ERR_LEN];
    fr_batch_t *b = fr_batch_decode(data, size, err);
    if (!b) {
        if (!err[0])
            __builtin_trap();
        return 0;
    }
    size_t rows = fr_batch_rows(b), cols = fr_batch_cols(b);
    if (!fr_batch_id(b)[0] || strlen(fr_batch_id(b)) >= FR_BATCH_ID_LEN || !fr_batch_dataset(b)[0])
        __builtin_trap();
    (void)fr_batch_source(b);
    (void)fr_batch_raw_path(b);
    (void)fr_batch_raw_sha256(b);
    (void)fr_batch_op(b);
    size_t total = 0;
    for (size_t c = 0; c < cols; c++) {
        if (!fr_batch_col_name(b, c)[0] || (unsigned)fr_batch_col_type(b, c) > FR_T_JSON)
            __builtin_trap();
        for (size_t r = 0; r < rows; r++) {
            size_t len;
            const char *v = fr_batch_value(b, c, r, &len);
            if (v && strlen(v) != len)
                __builtin_trap();
            total += len;
        }
    }
    for (size_t r = 0; r < rows; r++)
        (void)fr_batch_line(b, r);
    struct fr_buf out;
    fr_buf_init(&out, 0);
    if (fr_batch_copy_text(b, 0, rows, &out) != 0)
        __builtin_trap();
    if (out.len < total)
        __builtin_trap();
    fr_buf_deinit(&out);
    fr_batch_free(b);
    return 0;
}
