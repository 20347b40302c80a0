/* edge.o -- hand-written model for edge_model.h (harness tests only). */
#include "edge_model.h"

#include <string.h>

size_t edge_workspace_size(void) { return EDGE_WORKSPACE_SIZE; }

int edge_run(const void* const* inputs, void* const* outputs, void* workspace) {
    int32_t k, k2;
    unsigned char b;
    int i;
    if (!inputs || !outputs || !workspace) return SLMTVM_ERR_NULL;
    for (i = 0; i < EDGE_NUM_INPUTS; i++)
        if (!inputs[i]) return SLMTVM_ERR_NULL;
    for (i = 0; i < EDGE_NUM_OUTPUTS; i++)
        if (!outputs[i]) return SLMTVM_ERR_NULL;
    if ((uintptr_t)workspace % EDGE_WORKSPACE_ALIGN != 0) return SLMTVM_ERR_WORKSPACE_ALIGN;

    memcpy(&k, inputs[0], 4);
    b = *(const unsigned char*)inputs[2];
    for (i = 0; i < 3; i++) ((unsigned char*)outputs[0])[i] = (unsigned char)(b && k > i);
    ((int8_t*)outputs[1])[0] = (int8_t)(uint8_t)(uint32_t)k;
    ((int8_t*)outputs[1])[1] = (int8_t)(uint8_t)(0u - (uint32_t)k);
    memcpy(outputs[2], inputs[1], 2);
    k2 = (int32_t)(2u * (uint32_t)k);
    memcpy(outputs[4], &k2, 4);
    return SLMTVM_OK;
}
