/*
 * edge.h -- hand-written stand-in for `slmtvm build --name edge` output, covering the corners
 * of the C API that the `fake` model does not: scalar (rank-0) tensors only on the input side
 * (so EDGE_INPUT_DIMS is the empty list `{}`), f16/bool/i8/u8/i32, a zero-element output,
 * names that need file-stem sanitizing (including a non-ASCII and an empty one), two outputs
 * whose stems collide, and a zero-byte workspace.
 *
 *   input  0  "k:0"  i32[]   -> k_0.npy
 *   input  1  "é"    f16[]   -> _.npy
 *   input  2  "b"    bool[]  -> b.npy
 *   output 0  "m:0"  bool[3] -> m_0.npy     m[i] = b && k > i
 *   output 1  "m/0"  i8[2]   -> m_0_1.npy   {(int8)k, (int8)-k} (wrapping)
 *   output 2  "h"    f16[]   -> h.npy       the bits of input "é"
 *   output 3  "u"    u8[0]   -> u.npy       no elements
 *   output 4  ""     i32[1, 1] -> _.npy     2 * k (wrapping)
 */
#ifndef EDGE_H
#define EDGE_H

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

#define EDGE_NUM_INPUTS 3
#define EDGE_NUM_OUTPUTS 5
#define EDGE_WORKSPACE_SIZE 0
#define EDGE_WORKSPACE_ALIGN 16

#define EDGE_INPUT_NAMES {"k:0", "\xc3\xa9", "b"}
#define EDGE_INPUT_DTYPES {SLMTVM_I32, SLMTVM_F16, SLMTVM_BOOL}
#define EDGE_INPUT_RANKS {0, 0, 0}
#define EDGE_INPUT_DIMS {}
#define EDGE_INPUT_BYTES_LIST {4, 2, 1}
#define EDGE_OUTPUT_NAMES {"m:0", "m/0", "h", "u", ""}
#define EDGE_OUTPUT_DTYPES {SLMTVM_BOOL, SLMTVM_I8, SLMTVM_F16, SLMTVM_U8, SLMTVM_I32}
#define EDGE_OUTPUT_RANKS {1, 1, 0, 1, 2}
#define EDGE_OUTPUT_DIMS {3, 2, 0, 1, 1}
#define EDGE_OUTPUT_BYTES_LIST {3, 2, 2, 0, 4}

size_t edge_workspace_size(void);
int edge_run(const void* const* inputs, void* const* outputs, void* workspace);

#endif /* EDGE_H */
