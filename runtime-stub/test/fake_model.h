/*
 * fake.h -- hand-written stand-in for the header `slmtvm build --name fake` writes, used to
 * test runtime-stub/harness.c before the compiler exists. It follows the C API exactly.
 *
 * Model `fake`:
 *   input  0  x    f32[2, 3]    24 bytes
 *   input  1  ids  i64[4]       32 bytes
 *   output 0  y    f32[2, 3]    24 bytes   y = 2 * x + 1
 *   output 1  n    i64[4]       32 bytes   n = ids + 1 (wrapping)
 *   workspace 256 bytes, aligned to 64 bytes
 *
 * Usage:
 *   static float x[6], y[6];
 *   static int64_t ids[4], n[4];
 *   static unsigned char ws[FAKE_WORKSPACE_SIZE] __attribute__((aligned(FAKE_WORKSPACE_ALIGN)));
 *   const void *in[FAKE_NUM_INPUTS] = {x, ids};
 *   void *out[FAKE_NUM_OUTPUTS] = {y, n};
 *   int status = fake_run(in, out, ws);   // SLMTVM_OK on success
 *
 * No allocation, no mutable globals: re-entrant per workspace. Inputs and outputs need only
 * their element's natural alignment.
 */
#ifndef FAKE_H
#define FAKE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dtype codes */
#define SLMTVM_F32 1
#define SLMTVM_F16 2
#define SLMTVM_I8 3
#define SLMTVM_U8 4
#define SLMTVM_I32 5
#define SLMTVM_I64 6
#define SLMTVM_BOOL 7
/* status codes returned by fake_run */
#define SLMTVM_OK 0
#define SLMTVM_ERR_NULL 1            /* a NULL inputs/outputs array, entry, or workspace */
#define SLMTVM_ERR_WORKSPACE_ALIGN 2 /* workspace not aligned to FAKE_WORKSPACE_ALIGN */

#define FAKE_NUM_INPUTS 2
#define FAKE_NUM_OUTPUTS 2
#define FAKE_WORKSPACE_SIZE 256 /* bytes */
#define FAKE_WORKSPACE_ALIGN 64

#define FAKE_INPUT_0_NAME "x"
#define FAKE_INPUT_0_DTYPE SLMTVM_F32
#define FAKE_INPUT_0_RANK 2
#define FAKE_INPUT_0_SHAPE {2, 3}
#define FAKE_INPUT_0_BYTES 24
#define FAKE_INPUT_1_NAME "ids"
#define FAKE_INPUT_1_DTYPE SLMTVM_I64
#define FAKE_INPUT_1_RANK 1
#define FAKE_INPUT_1_SHAPE {4}
#define FAKE_INPUT_1_BYTES 32

#define FAKE_OUTPUT_0_NAME "y"
#define FAKE_OUTPUT_0_DTYPE SLMTVM_F32
#define FAKE_OUTPUT_0_RANK 2
#define FAKE_OUTPUT_0_SHAPE {2, 3}
#define FAKE_OUTPUT_0_BYTES 24
#define FAKE_OUTPUT_1_NAME "n"
#define FAKE_OUTPUT_1_DTYPE SLMTVM_I64
#define FAKE_OUTPUT_1_RANK 1
#define FAKE_OUTPUT_1_SHAPE {4}
#define FAKE_OUTPUT_1_BYTES 32

#define FAKE_INPUT_NAMES {"x", "ids"}
#define FAKE_INPUT_DTYPES {SLMTVM_F32, SLMTVM_I64}
#define FAKE_INPUT_RANKS {2, 1}
#define FAKE_INPUT_DIMS {2, 3, 4}
#define FAKE_INPUT_BYTES_LIST {24, 32}
#define FAKE_OUTPUT_NAMES {"y", "n"}
#define FAKE_OUTPUT_DTYPES {SLMTVM_F32, SLMTVM_I64}
#define FAKE_OUTPUT_RANKS {2, 1}
#define FAKE_OUTPUT_DIMS {2, 3, 4}
#define FAKE_OUTPUT_BYTES_LIST {24, 32}

size_t fake_workspace_size(void);
int fake_run(const void* const* inputs, void* const* outputs, void* workspace);

#ifdef __cplusplus
}
#endif
#endif /* FAKE_H */
