/*
 * fake.o -- a hand-written model implementing the slmtvm C API (see fake_model.h), standing in
 * for compiler output in the harness tests. Like compiled code it uses nothing from libc but
 * memcpy/memset, allocates nothing and keeps no mutable globals.
 *
 * FAKE_FAULT (tests only) makes it misbehave so the harness's checks can be tested:
 *   1  return status 42 after computing the outputs
 *   2  write one byte past the end of output y
 *   3  modify input x
 *   4  let output n depend on the previous run's workspace contents
 */
#include "fake_model.h"

#include <string.h>

/* Workspace layout: [0, 24) 2*x as f32, [64, 96) ids as i64, [128, 136) a run counter used by
 * FAKE_FAULT 4 only. */
#define WS_T 0
#define WS_IDS 64
#define WS_COUNT 128

size_t fake_workspace_size(void) { return FAKE_WORKSPACE_SIZE; }

int fake_run(const void* const* inputs, void* const* outputs, void* workspace) {
    unsigned char* ws = (unsigned char*)workspace;
    const float* x;
    const int64_t* ids;
    float* y;
    int64_t* n;
    float* t;
    int64_t* w;
    int i;

    if (!inputs || !outputs || !workspace) return SLMTVM_ERR_NULL;
    for (i = 0; i < FAKE_NUM_INPUTS; i++)
        if (!inputs[i]) return SLMTVM_ERR_NULL;
    for (i = 0; i < FAKE_NUM_OUTPUTS; i++)
        if (!outputs[i]) return SLMTVM_ERR_NULL;
    if ((uintptr_t)workspace % FAKE_WORKSPACE_ALIGN != 0) return SLMTVM_ERR_WORKSPACE_ALIGN;

    x = (const float*)inputs[0];
    ids = (const int64_t*)inputs[1];
    y = (float*)outputs[0];
    n = (int64_t*)outputs[1];
    t = (float*)(ws + WS_T);
    w = (int64_t*)(ws + WS_IDS);

    /* Stage intermediates in the workspace, as compiled code does. */
    for (i = 0; i < 6; i++) t[i] = 2.0f * x[i];
    memcpy(w, ids, FAKE_INPUT_1_BYTES);
    for (i = 0; i < 6; i++) y[i] = t[i] + 1.0f;
    /* Wrapping add in unsigned arithmetic: INT64_MAX + 1 is INT64_MIN, as in numpy. */
    for (i = 0; i < 4; i++) n[i] = (int64_t)((uint64_t)w[i] + 1u);

#if defined(FAKE_FAULT) && FAKE_FAULT == 1
    return 42;
#elif defined(FAKE_FAULT) && FAKE_FAULT == 2
    ((unsigned char*)y)[FAKE_OUTPUT_0_BYTES] = 0;
#elif defined(FAKE_FAULT) && FAKE_FAULT == 3
    ((float*)inputs[0])[0] = 0.0f;
#elif defined(FAKE_FAULT) && FAKE_FAULT == 4
    {
        int64_t count;
        memcpy(&count, ws + WS_COUNT, sizeof count);
        n[0] += count & 1;
        count++;
        memcpy(ws + WS_COUNT, &count, sizeof count);
    }
#endif
    return SLMTVM_OK;
}
