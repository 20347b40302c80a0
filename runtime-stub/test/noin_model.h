/*
 * noin.h -- hand-written stand-in for `slmtvm build --name noin` output: a model without
 * inputs (all constants), so every NOIN_INPUT_* table is the empty list, which the harness
 * must not reference.
 *
 *   output 0  "c"  f32[2]  -> c.npy   {1.5, -2}
 */
#ifndef NOIN_H
#define NOIN_H

#include <stddef.h>
#include <stdint.h>

#define SLMTVM_F32 1
#define SLMTVM_F16 2
#define SLMTVM_I8 3
#define SLMTVM_U8 4
#define SLMTVM_I32 5
#define SLMTVM_I64 6
#define SLMTVM_BOOL 7
#define SLMTVM_OK 0
#define SLMTVM_ERR_NULL 1
#define SLMTVM_ERR_WORKSPACE_ALIGN 2

#define NOIN_NUM_INPUTS 0
#define NOIN_NUM_OUTPUTS 1
#define NOIN_WORKSPACE_SIZE 8
#define NOIN_WORKSPACE_ALIGN 8

#define NOIN_INPUT_NAMES {}
#define NOIN_INPUT_DTYPES {}
#define NOIN_INPUT_RANKS {}
#define NOIN_INPUT_DIMS {}
#define NOIN_INPUT_BYTES_LIST {}
#define NOIN_OUTPUT_NAMES {"c"}
#define NOIN_OUTPUT_DTYPES {SLMTVM_F32}
#define NOIN_OUTPUT_RANKS {1}
#define NOIN_OUTPUT_DIMS {2}
#define NOIN_OUTPUT_BYTES_LIST {8}

size_t noin_workspace_size(void);
int noin_run(const void* const* inputs, void* const* outputs, void* workspace);

#endif /* NOIN_H */
