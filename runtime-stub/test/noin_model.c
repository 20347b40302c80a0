/* noin.o -- hand-written model for noin_model.h (harness tests only). */
#include "noin_model.h"

#include <string.h>

size_t noin_workspace_size(void) { return NOIN_WORKSPACE_SIZE; }

int noin_run(const void* const* inputs, void* const* outputs, void* workspace) {
    static const float c[2] = {1.5f, -2.0f};
    if (!inputs || !outputs || !outputs[0] || !workspace) return SLMTVM_ERR_NULL;
    if ((uintptr_t)workspace % NOIN_WORKSPACE_ALIGN != 0) return SLMTVM_ERR_WORKSPACE_ALIGN;
    memcpy(workspace, c, sizeof c); /* stage through the workspace */
    memcpy(outputs[0], workspace, sizeof c);
    return SLMTVM_OK;
}
