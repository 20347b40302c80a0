/*
 * Checks the hand-written `fake` model against the C API directly, without the harness: the
 * documented status codes for NULL arguments and a misaligned workspace, the results, and
 * that the per-tensor macros agree with the tables. Prints one line per failed check; exits 1
 * if any failed.
 */
#include "fake_model.h"

#include <stdio.h>
#include <string.h>

static int failures;

static void expect(int cond, const char *what) {
    if (!cond) {
        printf("fake_api_test: FAILED %s\n", what);
        failures++;
    }
}

int main(void) {
    static union {
        unsigned char bytes[FAKE_WORKSPACE_SIZE + FAKE_WORKSPACE_ALIGN];
        double align; /* the union only guarantees a little alignment: align by hand below */
    } space;
    unsigned char *ws = space.bytes + (FAKE_WORKSPACE_ALIGN - (size_t)((uintptr_t)space.bytes % FAKE_WORKSPACE_ALIGN)) % FAKE_WORKSPACE_ALIGN;
    float x[6] = {0.5f, -1.25f, 3.0f, -0.0f, 100.0f, 7.75f}, y[6];
    int64_t ids[4] = {0, -1, INT64_MAX - 1, 41}, n[4];
    const void *in[FAKE_NUM_INPUTS] = {x, ids};
    void *out[FAKE_NUM_OUTPUTS] = {y, n};
    const void *in_null[FAKE_NUM_INPUTS] = {x, NULL};
    void *out_null[FAKE_NUM_OUTPUTS] = {NULL, n};
    static const char *const names[] = FAKE_INPUT_NAMES, *const onames[] = FAKE_OUTPUT_NAMES;
    static const int dtypes[] = FAKE_INPUT_DTYPES, ranks[] = FAKE_INPUT_RANKS, dims[] = FAKE_INPUT_DIMS;
    static const int bytes[] = FAKE_INPUT_BYTES_LIST, obytes[] = FAKE_OUTPUT_BYTES_LIST;
    static const int shape0[] = FAKE_INPUT_0_SHAPE, shape1[] = FAKE_INPUT_1_SHAPE;
    int i;

    expect(fake_workspace_size() == FAKE_WORKSPACE_SIZE, "workspace_size() == FAKE_WORKSPACE_SIZE");
    expect(fake_run(NULL, out, ws) == SLMTVM_ERR_NULL, "NULL inputs -> SLMTVM_ERR_NULL");
    expect(fake_run(in, NULL, ws) == SLMTVM_ERR_NULL, "NULL outputs -> SLMTVM_ERR_NULL");
    expect(fake_run(in, out, NULL) == SLMTVM_ERR_NULL, "NULL workspace -> SLMTVM_ERR_NULL");
    expect(fake_run(in_null, out, ws) == SLMTVM_ERR_NULL, "NULL input entry -> SLMTVM_ERR_NULL");
    expect(fake_run(in, out_null, ws) == SLMTVM_ERR_NULL, "NULL output entry -> SLMTVM_ERR_NULL");
    expect(fake_run(in, out, ws + 8) == SLMTVM_ERR_WORKSPACE_ALIGN, "misaligned workspace -> SLMTVM_ERR_WORKSPACE_ALIGN");
    memset(ws, 0xCD, FAKE_WORKSPACE_SIZE);
    expect(fake_run(in, out, ws) == SLMTVM_OK, "valid call -> SLMTVM_OK");
    for (i = 0; i < 6; i++) expect(y[i] == 2.0f * x[i] + 1.0f, "y == 2x + 1");
    for (i = 0; i < 4; i++) expect(n[i] == ids[i] + 1, "n == ids + 1");
    expect(ws[0] != 0xCD, "the workspace was written");

    expect(strcmp(names[0], FAKE_INPUT_0_NAME) == 0 && strcmp(names[1], FAKE_INPUT_1_NAME) == 0, "input names");
    expect(strcmp(onames[0], FAKE_OUTPUT_0_NAME) == 0 && strcmp(onames[1], FAKE_OUTPUT_1_NAME) == 0, "output names");
    expect(dtypes[0] == FAKE_INPUT_0_DTYPE && dtypes[1] == FAKE_INPUT_1_DTYPE, "input dtypes");
    expect(ranks[0] == FAKE_INPUT_0_RANK && ranks[1] == FAKE_INPUT_1_RANK, "input ranks");
    expect(dims[0] == shape0[0] && dims[1] == shape0[1] && dims[2] == shape1[0], "input dims");
    expect(bytes[0] == FAKE_INPUT_0_BYTES && bytes[1] == FAKE_INPUT_1_BYTES, "input bytes");
    expect(obytes[0] == FAKE_OUTPUT_0_BYTES && obytes[1] == FAKE_OUTPUT_1_BYTES, "output bytes");
    return failures ? 1 : 0;
}
