/* generate.c — greedy text generation with two models compiled by slmtvm from one ONNX
 * KV-cache graph: `prefill` (the prompt, past length 0) and `decode` (one token per step).
 *
 * Token ids in, token ids out:  generate [-n N] ID...
 * prints the generated ids on a line starting with "tokens:", then prompt-processing and
 * generation speed in tokens per second.
 *
 * The KV cache is kept in place: every cache input/output pair the headers list in
 * <NAME>_IN_PLACE_PAIRS is one buffer, passed as both the past input and the present output,
 * so each step writes only the new token's keys and values (no copy of the cache). Both
 * models must lay the cache out alike (same physical shape): build them with bounds that
 * give the same total length, as build.sh does.
 *
 * Inputs are found by name: input_ids, attention_mask, position_ids (int64), and the cache
 * pairs; the logits output is the one named "logits". Symbols are set by name: "sequence"
 * (tokens in this step) and "past_sequence" (tokens already in the cache).
 *
 * Build: see build.sh (defines nothing; includes prefill.h and decode.h from its -I path). */
#include "prefill.h"
#include "decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TENSORS 256

typedef struct {
    const char *name;
    int (*run)(const int64_t *, const void *const *, void *const *, void *);
    int n_in, n_out, n_sym, n_pairs;
    const char *const *in_names, *const *out_names, *const *sym_names;
    const unsigned long long *in_bytes, *out_bytes, *in_ranks, *out_ranks, *in_dims, *out_dims;
    const long long *sym_bounds;
    const int *pairs;
    size_t ws_size;
} Model;

static const char *const p_in_names[] = PREFILL_INPUT_NAMES, *const p_out_names[] = PREFILL_OUTPUT_NAMES;
static const unsigned long long p_in_bytes[] = PREFILL_INPUT_BYTES_LIST, p_out_bytes[] = PREFILL_OUTPUT_BYTES_LIST;
static const unsigned long long p_in_ranks[] = PREFILL_INPUT_RANKS, p_out_ranks[] = PREFILL_OUTPUT_RANKS;
static const unsigned long long p_in_dims[] = PREFILL_INPUT_DIMS, p_out_dims[] = PREFILL_OUTPUT_DIMS;
static const char *const p_sym_names[] = PREFILL_SYMBOL_NAMES;
static const long long p_sym_bounds[] = PREFILL_SYMBOL_BOUNDS;
static const int p_pairs[] = PREFILL_IN_PLACE_PAIRS;
static const char *const d_in_names[] = DECODE_INPUT_NAMES, *const d_out_names[] = DECODE_OUTPUT_NAMES;
static const unsigned long long d_in_bytes[] = DECODE_INPUT_BYTES_LIST, d_out_bytes[] = DECODE_OUTPUT_BYTES_LIST;
static const unsigned long long d_in_ranks[] = DECODE_INPUT_RANKS, d_out_ranks[] = DECODE_OUTPUT_RANKS;
static const unsigned long long d_in_dims[] = DECODE_INPUT_DIMS, d_out_dims[] = DECODE_OUTPUT_DIMS;
static const char *const d_sym_names[] = DECODE_SYMBOL_NAMES;
static const long long d_sym_bounds[] = DECODE_SYMBOL_BOUNDS;
static const int d_pairs[] = DECODE_IN_PLACE_PAIRS;

static const Model prefill_model = {"prefill", prefill_run, PREFILL_NUM_INPUTS, PREFILL_NUM_OUTPUTS,
                                    PREFILL_NUM_SYMBOLS, PREFILL_NUM_IN_PLACE, p_in_names, p_out_names,
                                    p_sym_names, p_in_bytes, p_out_bytes, p_in_ranks, p_out_ranks, p_in_dims,
                                    p_out_dims, p_sym_bounds, p_pairs, PREFILL_WORKSPACE_SIZE};
static const Model decode_model = {"decode", decode_run, DECODE_NUM_INPUTS, DECODE_NUM_OUTPUTS,
                                   DECODE_NUM_SYMBOLS, DECODE_NUM_IN_PLACE, d_in_names, d_out_names,
                                   d_sym_names, d_in_bytes, d_out_bytes, d_in_ranks, d_out_ranks, d_in_dims,
                                   d_out_dims, d_sym_bounds, d_pairs, DECODE_WORKSPACE_SIZE};

static void die(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "generate: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    exit(2);
}

static int find(const char *const *names, int n, const char *want) {
    int k;
    for (k = 0; k < n; k++)
        if (strcmp(names[k], want) == 0) return k;
    return -1;
}

/* The d-th physical dim of tensor k (ranks/dims are the header's flat tables). */
static unsigned long long dim_of(const unsigned long long *ranks, const unsigned long long *dims, int k, int d) {
    unsigned long long off = 0;
    int i;
    for (i = 0; i < k; i++) off += ranks[i];
    return dims[off + (unsigned long long)d];
}

static void *xalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) die("out of memory%s%s", "", "");
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One model's bindings: every input and output buffer (caches shared), its symbols. */
typedef struct {
    const Model *m;
    void *in[MAX_TENSORS], *out[MAX_TENSORS];
    int ids, mask, pos, logits, sym_seq, sym_past;
    int64_t sym[16];
} Bound;

static void bind(Bound *b, const Model *m, const char *const *cache_names, void **cache, int n_cache) {
    int k, c;
    memset(b, 0, sizeof *b);
    b->m = m;
    if (m->n_in > MAX_TENSORS || m->n_out > MAX_TENSORS || m->n_sym > 16) die("%s: too many tensors%s", m->name, "");
    b->ids = find(m->in_names, m->n_in, "input_ids");
    b->mask = find(m->in_names, m->n_in, "attention_mask");
    b->pos = find(m->in_names, m->n_in, "position_ids");
    b->logits = find(m->out_names, m->n_out, "logits");
    if (b->ids < 0 || b->mask < 0 || b->logits < 0) die("%s: needs inputs input_ids, attention_mask and output logits%s", m->name, "");
    b->sym_seq = find(m->sym_names, m->n_sym, "sequence");
    b->sym_past = find(m->sym_names, m->n_sym, "past_sequence");
    for (k = 0; k < m->n_sym; k++)
        if (k != b->sym_seq && k != b->sym_past)
            die("%s: symbol %s is neither sequence nor past_sequence (fix it with --dim)", m->name, m->sym_names[k]);
    for (k = 0; k < m->n_in; k++) b->in[k] = NULL;
    for (c = 0; c < m->n_pairs; c++) {
        int in = m->pairs[2 * c], out = m->pairs[2 * c + 1], j = 0;
        for (j = 0; j < n_cache; j++)
            if (strcmp(cache_names[j], m->in_names[in]) == 0) break;
        if (j == n_cache) die("%s: cache input %s is not a cache of the other model", m->name, m->in_names[in]);
        b->in[in] = cache[j];
        b->out[out] = cache[j];
    }
    for (k = 0; k < m->n_in; k++)
        if (!b->in[k]) {
            if (find(cache_names, n_cache, m->in_names[k]) >= 0)
                die("%s: input %s is a cache the model cannot update in place", m->name, m->in_names[k]);
            b->in[k] = xalloc((size_t)m->in_bytes[k]);
        }
    for (k = 0; k < m->n_out; k++)
        if (!b->out[k]) b->out[k] = xalloc((size_t)m->out_bytes[k]);
}

/* Runs one step over `n` tokens at positions past..past+n-1; returns the argmax of the last
 * token's logits. */
static int64_t step(Bound *b, void *ws, const int64_t *tokens, int n, int64_t past) {
    const Model *m = b->m;
    int64_t *ids = b->in[b->ids], *mask = b->in[b->mask];
    unsigned long long ids_cap = dim_of(m->in_ranks, m->in_dims, b->ids, 1);
    unsigned long long mask_cap = dim_of(m->in_ranks, m->in_dims, b->mask, 1);
    unsigned long long rank = m->out_ranks[b->logits];
    unsigned long long rows = dim_of(m->out_ranks, m->out_dims, b->logits, (int)rank - 2);
    unsigned long long vocab = dim_of(m->out_ranks, m->out_dims, b->logits, (int)rank - 1);
    const float *logits, *row;
    int64_t best = 0;
    unsigned long long v;
    int i, s;
    if ((unsigned long long)n > ids_cap || (unsigned long long)(past + n) > mask_cap)
        die("%s: the step does not fit the model's bounds%s", m->name, "");
    for (i = 0; i < n; i++) ids[i] = tokens[i];
    for (i = 0; i < past + n; i++) mask[i] = 1;
    if (b->pos >= 0) {
        int64_t *pos = b->in[b->pos];
        for (i = 0; i < n; i++) pos[i] = past + i;
    }
    if (b->sym_seq >= 0) b->sym[b->sym_seq] = n;
    if (b->sym_past >= 0) b->sym[b->sym_past] = past;
    s = m->run(b->sym, (const void *const *)b->in, (void *const *)b->out, ws);
    if (s != SLMTVM_OK) {
        char code[16];
        snprintf(code, sizeof code, "%d", s);
        die("%s_run returned status %s", m->name, code);
    }
    logits = b->out[b->logits];
    row = logits + (unsigned long long)(n - 1 < (int)rows ? n - 1 : (int)rows - 1) * vocab;
    for (v = 1; v < vocab; v++)
        if (row[v] > row[best]) best = (int64_t)v;
    return best;
}

int main(int argc, char **argv) {
    int a = 1, n_gen = 32, n_prompt, i, n_cache = 0;
    int64_t *prompt, *out, past;
    const char *cache_names[MAX_TENSORS];
    void *cache[MAX_TENSORS];
    Bound pb, db;
    void *ws;
    size_t ws_size = PREFILL_WORKSPACE_SIZE > DECODE_WORKSPACE_SIZE ? PREFILL_WORKSPACE_SIZE : DECODE_WORKSPACE_SIZE;
    double t0, t_prefill, t_decode;

    if (a + 1 < argc && strcmp(argv[a], "-n") == 0) {
        n_gen = atoi(argv[a + 1]);
        a += 2;
    }
    n_prompt = argc - a;
    if (n_prompt < 1 || n_gen < 1) die("usage: generate [-n N] TOKEN_ID...%s%s", "", "");
    prompt = xalloc(sizeof *prompt * (size_t)n_prompt);
    out = xalloc(sizeof *out * (size_t)n_gen);
    for (i = 0; i < n_prompt; i++) prompt[i] = atoll(argv[a + i]);

    /* The caches: one buffer per decode in-place pair, at the decode model's physical shape;
     * the prefill model must have the same pairs at the same size. */
    for (i = 0; i < DECODE_NUM_IN_PLACE; i++) {
        int k = d_pairs[2 * i], pk = find(p_in_names, PREFILL_NUM_INPUTS, d_in_names[k]);
        if (pk < 0 || p_in_bytes[pk] != d_in_bytes[k])
            die("cache %s: the prefill model does not lay it out as the decode model does%s", d_in_names[k], "");
        cache_names[n_cache] = d_in_names[k];
        cache[n_cache++] = xalloc((size_t)d_in_bytes[k]);
    }
    bind(&pb, &prefill_model, cache_names, cache, n_cache);
    bind(&db, &decode_model, cache_names, cache, n_cache);
    ws = xalloc(ws_size + 64);
    ws = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);

    t0 = now_s();
    out[0] = step(&pb, ws, prompt, n_prompt, 0);
    t_prefill = now_s() - t0;
    past = n_prompt;
    t0 = now_s();
    for (i = 1; i < n_gen; i++, past++) out[i] = step(&db, ws, &out[i - 1], 1, past);
    t_decode = now_s() - t0;

    printf("tokens:");
    for (i = 0; i < n_gen; i++) printf(" %lld", (long long)out[i]);
    printf("\nprompt: %d tokens in %.3f ms (%.1f tokens/s)\n", n_prompt, t_prefill * 1e3, n_prompt / t_prefill);
    if (n_gen > 1)
        printf("generation: %d tokens in %.3f ms (%.1f tokens/s)\n", n_gen - 1, t_decode * 1e3, (n_gen - 1) / t_decode);
    return 0;
}
