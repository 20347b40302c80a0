/*
 * slmtvm runtime-stub harness: a generic test driver for one model compiled by `slmtvm build`.
 *
 * It reads each input from IN_DIR/<stem>.npy, calls NAME_run once with one caller-owned
 * workspace, writes each output to OUT_DIR/<stem>.npy and prints one line per output:
 *
 *     ./run [-t N] IN_DIR OUT_DIR
 *     y: f32[2, 3] -> OUT_DIR/y.npy
 *     latency_us: MEDIAN MIN MAX            (only with -t N: N more runs, CLOCK_MONOTONIC)
 *
 * Every failure prints one line `harness error: ...` to stderr and exits with status 2.
 *
 * BUILD (plain C99 plus libc; NAME as given to `slmtvm build --name`, NAME_UPPER upper-cased):
 *
 *     cc -O2 -std=c99 -D_POSIX_C_SOURCE=200809L \
 *        -DSLMTVM_MODEL=NAME -DSLMTVM_MODEL_UPPER=NAME_UPPER \
 *        -include NAME.h harness.c NAME.o -o run
 *
 * Add -static for a binary run under qemu-user, and -pthread for a threaded build (NAME_THREADS
 * above 1, `slmtvm build --threads N`). -D_POSIX_C_SOURCE=200809L is optional on
 * Linux: NAME.h includes <stdint.h> before this file starts, which fixes glibc's feature set
 * to plain C99 (no clock_gettime); without the flag the harness declares clock_gettime itself
 * with the Linux LP64 ABI.
 *
 * PREPROCESSOR INTERFACE
 *   SLMTVM_MODEL        (required) the model name: functions are SLMTVM_MODEL ## _run etc.
 *   SLMTVM_MODEL_UPPER  (required) its upper-cased form: macros are SLMTVM_MODEL_UPPER ## _X.
 *   SLMTVM_PROFILE      (optional) for a profiling build (`slmtvm bench --kernels`): defines
 *                       slmtvm_profile(k), which the model calls before each kernel k, and
 *                       with -t prints `kernel_us: K MEAN_US` per kernel over the timed runs
 *                       and `peak_iters_per_us: R`, the rate of NAME_peak's loop (12
 *                       independent multiply-adds at the kernels' vector width per
 *                       iteration: the FMA peak is R x 12 x lanes x 2 / 1000 GFLOP/s).
 *   NAME_UPPER_THREADS  (from the header; absent means 1) above 1: the model exports
 *                       NAME_run_parallel, which the harness calls with a pool of threads
 *                       created once at start (pthreads; link with -pthread): NAME_THREADS
 *                       threads, or SLMTVM_THREADS from the environment when set (1 there runs
 *                       the tasks serially, with a NULL parallel_for).
 *   SLMTVM_HARNESS_IO_ALIGN (optional, default 0) alignment of the input/output buffers. 0
 *                       means natural element alignment only: each buffer starts at an address
 *                       that is a multiple of its element size but not of twice that, so that
 *                       compiled code which assumes more alignment of caller buffers fails here
 *                       rather than on a board. A power of two A places buffers at A mod 2A.
 *   The model header must be force-included first (-include NAME.h) and provide, with the
 *   prefix NAME_UPPER_: NUM_INPUTS, NUM_OUTPUTS, WORKSPACE_SIZE, WORKSPACE_ALIGN,
 *   INPUT_NAMES, INPUT_DTYPES, INPUT_RANKS, INPUT_DIMS, INPUT_BYTES_LIST and the OUTPUT_
 *   counterparts; SLMTVM_OK and the SLMTVM_<dtype> codes; and NAME_workspace_size, NAME_run.
 *   The *_DIMS tables are used through their stringified text (so an all-scalar `{}` list,
 *   which is not valid C99 as an initializer, works); when NUM_INPUTS (or NUM_OUTPUTS) is 0
 *   the corresponding tables are not referenced at all.
 *   Names: NAME and NAME_UPPER must be C identifiers that are not macros of <stddef.h> or
 *   <stdint.h> (e.g. not `NULL`); every model macro is captured below before any other libc
 *   header is included, so names like `errno`, `stdin` or `eof` are fine.
 *
 * CHECKS beyond the model's status code (each a `harness error`): the header tables agree
 * with each other (sum of ranks, bytes = elements x element size, NAME_workspace_size() =
 * NAME_WORKSPACE_SIZE); the model writes nothing outside its outputs and workspace (guard
 * bytes around every buffer), never modifies its inputs, writes only 0/1 into bool outputs,
 * and (with -t) gives byte-identical outputs on every run. Outputs are pre-filled with 0xFF
 * (NaN in f32/f16) and the workspace with 0xCD, so nothing may rely on zeroed memory.
 */

#if !defined(SLMTVM_MODEL) || !defined(SLMTVM_MODEL_UPPER)
#error "define SLMTVM_MODEL=NAME and SLMTVM_MODEL_UPPER=NAME_UPPER (see the top of harness.c)"
#endif
#ifndef SLMTVM_OK
#error "the model header is not included: compile with -include NAME.h (see the top of harness.c)"
#endif
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* effective only where libc is not yet configured (e.g. musl) */
#endif

/* ---- Capture everything the model header provides (before other libc headers). ---------- */

#define SLMTVM_PASTE_(a, b) a##b
#define SLMTVM_PASTE(a, b) SLMTVM_PASTE_(a, b)
/* SLMTVM_FN(_run) -> NAME_run;  SLMTVM_M(_NUM_INPUTS) -> NAME_UPPER_NUM_INPUTS */
#define SLMTVM_FN(suffix) SLMTVM_PASTE(SLMTVM_MODEL, suffix)
#define SLMTVM_M(suffix) SLMTVM_PASTE(SLMTVM_MODEL_UPPER, suffix)
#define SLMTVM_STR_(...) #__VA_ARGS__
#define SLMTVM_XSTR(...) SLMTVM_STR_(__VA_ARGS__)
#define SLMTVM_COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* A compile-time assertion at file scope (C99 has no static_assert). */
#define SLMTVM_ASSERT(name, cond) typedef char slmtvm_assert_##name[(cond) ? 1 : -1]

static const char h_model[] = SLMTVM_XSTR(SLMTVM_MODEL);
static const char h_upper[] = SLMTVM_XSTR(SLMTVM_MODEL_UPPER);
#ifndef SLMTVM_ERR_SYMBOL
#define SLMTVM_ERR_SYMBOL 3
#endif
#if SLMTVM_M(_NUM_SYMBOLS) > 0
#define H_NUM_SYMS SLMTVM_M(_NUM_SYMBOLS)
static int (*const h_run_sym)(const int64_t *, const void *const *, void *const *, void *) = SLMTVM_FN(_run);
static const char *const h_sym_names[] = SLMTVM_M(_SYMBOL_NAMES);
static const long long h_sym_bounds[] = SLMTVM_M(_SYMBOL_BOUNDS);
#if SLMTVM_M(_NUM_INPUTS) > 0
static const int h_in_dim_syms[] = SLMTVM_M(_INPUT_DIM_SYMBOLS);
static void (*const h_in_logical)(int, const int64_t *, int64_t *) = SLMTVM_FN(_input_dims);
#endif
#if SLMTVM_M(_NUM_OUTPUTS) > 0
static void (*const h_out_logical)(int, const int64_t *, int64_t *) = SLMTVM_FN(_output_dims);
#endif
#else
#define H_NUM_SYMS 0
static int (*const h_run)(const void *const *, void *const *, void *) = SLMTVM_FN(_run);
#endif
static size_t (*const h_workspace_size)(void) = SLMTVM_FN(_workspace_size);
static const unsigned long long h_workspace_size_macro = SLMTVM_M(_WORKSPACE_SIZE);
enum {
    H_NUM_IN = SLMTVM_M(_NUM_INPUTS),
    H_NUM_OUT = SLMTVM_M(_NUM_OUTPUTS),
    H_WS_ALIGN = SLMTVM_M(_WORKSPACE_ALIGN),
    H_DT_F32 = SLMTVM_F32,
    H_DT_F16 = SLMTVM_F16,
    H_DT_I8 = SLMTVM_I8,
    H_DT_U8 = SLMTVM_U8,
    H_DT_I32 = SLMTVM_I32,
    H_DT_I64 = SLMTVM_I64,
    H_DT_BOOL = SLMTVM_BOOL,
    H_OK = SLMTVM_OK,
    H_ERR_NULL = SLMTVM_ERR_NULL,
    H_ERR_WORKSPACE_ALIGN = SLMTVM_ERR_WORKSPACE_ALIGN,
    H_ERR_SYMBOL = SLMTVM_ERR_SYMBOL
};
SLMTVM_ASSERT(num_inputs, SLMTVM_M(_NUM_INPUTS) >= 0);
SLMTVM_ASSERT(num_outputs, SLMTVM_M(_NUM_OUTPUTS) >= 0);
SLMTVM_ASSERT(workspace_align_pow2,
              SLMTVM_M(_WORKSPACE_ALIGN) > 0 && (SLMTVM_M(_WORKSPACE_ALIGN) & (SLMTVM_M(_WORKSPACE_ALIGN) - 1)) == 0);

#if SLMTVM_M(_NUM_INPUTS) > 0
static const char *const h_in_names[] = SLMTVM_M(_INPUT_NAMES);
static const int h_in_dtypes[] = SLMTVM_M(_INPUT_DTYPES);
static const unsigned long long h_in_ranks[] = SLMTVM_M(_INPUT_RANKS);
static const unsigned long long h_in_bytes[] = SLMTVM_M(_INPUT_BYTES_LIST);
static const char h_in_dims[] = SLMTVM_XSTR(SLMTVM_M(_INPUT_DIMS));
SLMTVM_ASSERT(input_names, SLMTVM_COUNT(h_in_names) == SLMTVM_M(_NUM_INPUTS));
SLMTVM_ASSERT(input_dtypes, SLMTVM_COUNT(h_in_dtypes) == SLMTVM_M(_NUM_INPUTS));
SLMTVM_ASSERT(input_ranks, SLMTVM_COUNT(h_in_ranks) == SLMTVM_M(_NUM_INPUTS));
SLMTVM_ASSERT(input_bytes, SLMTVM_COUNT(h_in_bytes) == SLMTVM_M(_NUM_INPUTS));
#else
static const char *const h_in_names[1] = {""};
static const int h_in_dtypes[1] = {0};
static const unsigned long long h_in_ranks[1] = {0};
static const unsigned long long h_in_bytes[1] = {0};
static const char h_in_dims[] = "{}";
#endif

#if SLMTVM_M(_NUM_OUTPUTS) > 0
static const char *const h_out_names[] = SLMTVM_M(_OUTPUT_NAMES);
static const int h_out_dtypes[] = SLMTVM_M(_OUTPUT_DTYPES);
static const unsigned long long h_out_ranks[] = SLMTVM_M(_OUTPUT_RANKS);
static const unsigned long long h_out_bytes[] = SLMTVM_M(_OUTPUT_BYTES_LIST);
static const char h_out_dims[] = SLMTVM_XSTR(SLMTVM_M(_OUTPUT_DIMS));
SLMTVM_ASSERT(output_names, SLMTVM_COUNT(h_out_names) == SLMTVM_M(_NUM_OUTPUTS));
SLMTVM_ASSERT(output_dtypes, SLMTVM_COUNT(h_out_dtypes) == SLMTVM_M(_NUM_OUTPUTS));
SLMTVM_ASSERT(output_ranks, SLMTVM_COUNT(h_out_ranks) == SLMTVM_M(_NUM_OUTPUTS));
SLMTVM_ASSERT(output_bytes, SLMTVM_COUNT(h_out_bytes) == SLMTVM_M(_NUM_OUTPUTS));
#else
static const char *const h_out_names[1] = {""};
static const int h_out_dtypes[1] = {0};
static const unsigned long long h_out_ranks[1] = {0};
static const unsigned long long h_out_bytes[1] = {0};
static const char h_out_dims[] = "{}";
#endif

#ifndef SLMTVM_HARNESS_IO_ALIGN
#define SLMTVM_HARNESS_IO_ALIGN 0
#endif
enum { H_IO_ALIGN = SLMTVM_HARNESS_IO_ALIGN };
SLMTVM_ASSERT(io_align, SLMTVM_HARNESS_IO_ALIGN >= 0 && SLMTVM_HARNESS_IO_ALIGN <= 4096 &&
                            (SLMTVM_HARNESS_IO_ALIGN & (SLMTVM_HARNESS_IO_ALIGN - 1)) == 0);

#if SLMTVM_M(_THREADS) > 1
#define H_THREADS SLMTVM_M(_THREADS)
#if H_NUM_SYMS > 0
static int (*const h_prun_sym)(const int64_t *, const void *const *, void *const *, void *, slmtvm_parallel_for_fn,
                               void *) = SLMTVM_FN(_run_parallel);
#else
static int (*const h_prun)(const void *const *, void *const *, void *, slmtvm_parallel_for_fn, void *) =
    SLMTVM_FN(_run_parallel);
#endif
#else
#define H_THREADS 1
#endif

#ifdef SLMTVM_PROFILE
void SLMTVM_FN(_peak)(int64_t iters, float *out);
static void (*const h_peak)(int64_t, float *) = SLMTVM_FN(_peak);
#endif

/* From here on nothing refers to SLMTVM_MODEL, SLMTVM_MODEL_UPPER or the model's macros. */

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if H_THREADS > 1
#include <pthread.h>
#endif

/* Counts as variables, not constants, so loops over zero inputs compile without warnings. */
static const size_t n_in = H_NUM_IN, n_out = H_NUM_OUT;

/* ---- Errors --------------------------------------------------------------------------------- */

#if defined(__GNUC__)
#define H_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define H_NORETURN __attribute__((noreturn))
#else
#define H_PRINTF(f, a)
#define H_NORETURN
#endif

/* Prints `harness error: <message>` as exactly one line on stderr and exits with status 2. */
static void fail(const char *fmt, ...) H_PRINTF(1, 2) H_NORETURN;
static void fail(const char *fmt, ...) {
    char msg[4096];
    char *p;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?'; /* keep it one line */
    fflush(stdout);
    fprintf(stderr, "harness error: %s\n", msg);
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fail("out of memory allocating %zu bytes", n);
    return p;
}

/* Prints s with control characters as '?', so one output is one line. */
static void put_clean(const char *s) {
    for (; *s; s++) putchar(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s);
}

/* ---- Tensors as the header declares them ------------------------------------------------------ */

#define GUARD_BYTES 64
#define GUARD_BYTE 0xCB
#define OUTPUT_FILL 0xFF
#define WORKSPACE_FILL 0xCD

typedef struct {
    const char *kind; /* "input" or "output" */
    const char *name;
    int dtype;
    size_t rank;
    const unsigned long long *dims;
    size_t bytes;
    char *file;           /* file name in IN_DIR / OUT_DIR, with .npy */
    char *path;           /* dir + file */
    unsigned char *alloc; /* allocation: guard | data | guard */
    size_t alloc_size;
    unsigned char *data; /* what the model sees */
    unsigned char *copy; /* pristine input / first-run output */
    /* Symbolic models: the logical dims (the .npy shape) and offset of this tensor's dims in
     * the header's *_DIMS table. */
    unsigned long long ldims[64];
    size_t dim_base;
} Tensor;

/* ---- Symbol values (symbolic models) --------------------------------------------------------- */

#if H_NUM_SYMS > 0
static int64_t h_syms[H_NUM_SYMS];
static int h_sym_set[H_NUM_SYMS];
#endif

/* Copies the logical elements between a dense buffer of ldims and a physical one of pdims. */
static void copy_logical(unsigned char *dense, unsigned char *phys, const unsigned long long *ldims,
                         const unsigned long long *pdims, size_t rank, size_t esize, int to_phys) {
    size_t idx[64], k, n = 1, i;
    for (k = 0; k < rank; k++) {
        n *= (size_t)ldims[k];
        idx[k] = 0;
    }
    for (i = 0; i < n; i++) {
        size_t off = 0;
        for (k = 0; k < rank; k++) off = off * (size_t)pdims[k] + idx[k];
        if (to_phys) memcpy(phys + off * esize, dense + i * esize, esize);
        else memcpy(dense + i * esize, phys + off * esize, esize);
        for (k = rank; k-- > 0;) {
            if (++idx[k] < ldims[k]) break;
            idx[k] = 0;
        }
    }
}

typedef struct {
    const char *descr; /* dtype string numpy writes, without the byte-order character */
    const char *name;  /* slmtvm's short name */
    size_t size;
} DTypeInfo;

static const DTypeInfo *dtype_info(int code) {
    static const DTypeInfo f32 = {"f4", "f32", 4}, f16 = {"f2", "f16", 2}, i8 = {"i1", "i8", 1},
                           u8 = {"u1", "u8", 1}, i32 = {"i4", "i32", 4}, i64 = {"i8", "i64", 8},
                           b = {"b1", "bool", 1};
    if (code == H_DT_F32) return &f32;
    if (code == H_DT_F16) return &f16;
    if (code == H_DT_I8) return &i8;
    if (code == H_DT_U8) return &u8;
    if (code == H_DT_I32) return &i32;
    if (code == H_DT_I64) return &i64;
    if (code == H_DT_BOOL) return &b;
    return NULL;
}

/* Parses the stringified text of a `{2, 16, 2, 16}` dims table into *count numbers. */
static unsigned long long *parse_dims(const char *text, const char *macro, size_t *count) {
    size_t cap = 1, n = 0;
    const char *p;
    unsigned long long *v;
    for (p = text; *p; p++) cap += (*p == ',');
    v = xmalloc(cap * sizeof *v);
    p = text;
    while (*p == ' ') p++;
    if (*p++ != '{') goto bad;
    for (;;) {
        unsigned long long d = 0;
        while (*p == ' ') p++;
        if (*p == '}') break;
        if (*p < '0' || *p > '9') goto bad;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (d > (ULLONG_MAX - (unsigned)(*p - '0')) / 10) goto bad;
            d = d * 10 + (unsigned)(*p - '0');
        }
        while (*p == 'u' || *p == 'U' || *p == 'l' || *p == 'L') p++;
        if (n == cap) goto bad;
        v[n++] = d;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p != '}') goto bad;
    }
    p++;
    while (*p == ' ') p++;
    if (*p) goto bad;
    *count = n;
    return v;
bad:
    fail("model header: cannot parse %s_%s_DIMS = `%s` (expected {d0, d1, ...})", h_upper, macro, text);
    return NULL;
}

/* The .npy file stem of a tensor name, as slmtvm's frontend::npy::file_stem: every character
 * (Unicode scalar value, input is UTF-8) outside [A-Za-z0-9._-] becomes '_'; "" becomes "_". */
static char *file_stem(const char *name) {
    char *s = xmalloc(strlen(name) + 2), *o = s;
    const unsigned char *p;
    for (p = (const unsigned char *)name; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == '-')
            *o++ = (char)c;
        else if (c < 0x80 || c >= 0xC0)
            *o++ = '_'; /* an ASCII character or the lead byte of a UTF-8 sequence */
        /* UTF-8 continuation bytes (0x80..0xBF) belong to the character already replaced */
    }
    if (o == s) *o++ = '_';
    *o = '\0';
    return s;
}

static char *join_path(const char *dir, const char *file) {
    size_t nd = strlen(dir), nf = strlen(file);
    int slash = nd > 0 && dir[nd - 1] != '/';
    char *p = xmalloc(nd + (size_t)slash + nf + 1);
    memcpy(p, dir, nd);
    if (slash) p[nd] = '/';
    memcpy(p + nd + (size_t)slash, file, nf + 1);
    return p;
}

static void format_shape(char *buf, size_t size, const unsigned long long *dims, size_t rank, const char *open,
                         const char *close) {
    size_t i, n = (size_t)snprintf(buf, size, "%s", open);
    for (i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%llu", i ? ", " : "", dims[i]);
    if (n < size) snprintf(buf + n, size - n, "%s", close);
}

/* Builds the tensor table from the header's lists and checks that the lists agree. */
static Tensor *declare(const char *kind, size_t count, const char *const *names, const int *dtypes,
                       const unsigned long long *ranks, const unsigned long long *bytes, const char *dims_text,
                       const char *prefix, unsigned long long **dims_out) {
    Tensor *t = xmalloc((count ? count : 1) * sizeof *t);
    size_t ndims, used = 0, i, j;
    unsigned long long *dims = parse_dims(dims_text, prefix, &ndims);
    *dims_out = dims;
    for (i = 0; i < count; i++) {
        const DTypeInfo *dt = dtype_info(dtypes[i]);
        unsigned long long elems = 1;
        memset(&t[i], 0, sizeof t[i]);
        t[i].kind = kind;
        t[i].name = names[i];
        t[i].dtype = dtypes[i];
        if (!dt)
            fail("model header: %s_%s_DTYPES[%zu] = %d is not a dtype code", h_upper, prefix, i, dtypes[i]);
        if (ranks[i] > ndims - used)
            fail("model header: %s_%s_RANKS sum to more than the %zu entries of %s_%s_DIMS", h_upper, prefix,
                 ndims, h_upper, prefix);
        t[i].rank = (size_t)ranks[i];
        t[i].dims = dims + used;
        t[i].dim_base = used;
        if (t[i].rank > 64) fail("model header: %s '%s' has rank %zu (at most 64)", kind, t[i].name, t[i].rank);
        used += t[i].rank;
        for (j = 0; j < t[i].rank; j++) {
            if (t[i].dims[j] && elems > ULLONG_MAX / t[i].dims[j])
                fail("model header: %s '%s' has too many elements", kind, t[i].name);
            elems *= t[i].dims[j];
        }
        if (elems > (unsigned long long)((size_t)-1 - 4 * GUARD_BYTES - 8192) / dt->size ||
            elems * dt->size != bytes[i]) {
            char shape[512];
            format_shape(shape, sizeof shape, t[i].dims, t[i].rank, "[", "]");
            fail("model header: %s '%s' is %s%s but %s_%s_BYTES_LIST says %llu bytes", kind, t[i].name, dt->name,
                 shape, h_upper, prefix, bytes[i]);
        }
        t[i].bytes = (size_t)bytes[i];
    }
    if (used != ndims)
        fail("model header: %s_%s_RANKS sum to %zu but %s_%s_DIMS has %zu entries", h_upper, prefix, used, h_upper,
             prefix, ndims);
    return t;
}

/* ---- Buffers with guard bytes ------------------------------------------------------------------ */

/* Allocates `bytes` at an address that is a multiple of `align` but not of 2*align, with
 * guard bytes on both sides. */
static void place(Tensor *t, size_t align) {
    size_t off;
    t->alloc_size = t->bytes + 3 * align + 2 * GUARD_BYTES;
    t->alloc = xmalloc(t->alloc_size);
    memset(t->alloc, GUARD_BYTE, t->alloc_size);
    off = GUARD_BYTES + (2 * align - (size_t)((uintptr_t)(t->alloc + GUARD_BYTES) % (2 * align))) % (2 * align) + align;
    t->data = t->alloc + off;
}

static void check_guards(const Tensor *t, const char *what) {
    size_t i, end = (size_t)(t->data - t->alloc) + t->bytes;
    for (i = 0; i < t->alloc_size; i++) {
        if (i == (size_t)(t->data - t->alloc)) i = end;
        if (i < t->alloc_size && t->alloc[i] != GUARD_BYTE)
            fail("%s wrote outside %s '%s' (byte %ld relative to its start)", what, t->kind, t->name,
                 (long)i - (long)(t->data - t->alloc));
    }
}

/* ---- .npy files ------------------------------------------------------------------------------ */

typedef struct {
    const char *p;
    const char *end;
} Cursor;

static void skip_ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int take(Cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A Python string literal in single or double quotes (no escapes) into buf. */
static int take_string(Cursor *c, char *buf, size_t size) {
    char q;
    size_t n = 0;
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    q = *c->p++;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= size) return 0;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    buf[n] = '\0';
    return 1;
}

static int take_word(Cursor *c, const char *w) {
    size_t n = strlen(w);
    skip_ws(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

#define MAX_HEADER (1u << 20)
#define MAX_RANK 64

/* Reads IN_DIR/<stem>.npy into t->data after checking its header against the declaration. */
static void read_input(Tensor *t) {
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    const DTypeInfo *dt = dtype_info(t->dtype);
    unsigned char pre[12];
    unsigned long hlen;
    size_t i, rank = 0, got;
    char *header, descr[32] = "", shape_s[1024], want_s[512];
    unsigned long long shape[MAX_RANK];
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0, extra;
    Cursor c;
    FILE *f = fopen(t->path, "rb");
    if (!f) fail("input '%s': cannot open %s: %s", t->name, t->path, strerror(errno));
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, magic, 6) != 0)
        fail("input '%s': %s is not a .npy file (bad magic)", t->name, t->path);
    if ((pre[6] != 1 && pre[6] != 2 && pre[6] != 3) || pre[7] != 0)
        fail("input '%s': %s has .npy version %u.%u (supported: 1.0, 2.0, 3.0)", t->name, t->path, pre[6], pre[7]);
    if (pre[6] == 1) {
        hlen = (unsigned long)pre[8] | (unsigned long)pre[9] << 8;
    } else {
        if (fread(pre + 10, 1, 2, f) != 2) fail("input '%s': %s: truncated .npy header", t->name, t->path);
        hlen = (unsigned long)pre[8] | (unsigned long)pre[9] << 8 | (unsigned long)pre[10] << 16 |
               (unsigned long)pre[11] << 24;
    }
    if (hlen > MAX_HEADER)
        fail("input '%s': %s: .npy header of %lu bytes is too large", t->name, t->path, hlen);
    header = xmalloc(hlen + 1);
    if (fread(header, 1, hlen, f) != hlen) fail("input '%s': %s: truncated .npy header", t->name, t->path);
    header[hlen] = '\0';
    c.p = header;
    c.end = header + hlen;
    if (!take(&c, '{')) goto bad_header;
    while (!take(&c, '}')) {
        char key[32];
        if (!take_string(&c, key, sizeof key) || !take(&c, ':')) goto bad_header;
        if (strcmp(key, "descr") == 0 && !have_descr) {
            have_descr = 1;
            if (!take_string(&c, descr, sizeof descr)) {
                fail("input '%s': %s: unsupported descr (structured or non-string dtype)", t->name, t->path);
            }
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            have_fortran = 1;
            if (take_word(&c, "True")) fortran = 1;
            else if (!take_word(&c, "False")) goto bad_header;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            have_shape = 1;
            if (!take(&c, '(')) goto bad_header;
            while (!take(&c, ')')) {
                unsigned long long d = 0;
                skip_ws(&c);
                if (c.p >= c.end || *c.p < '0' || *c.p > '9' || rank == MAX_RANK) goto bad_header;
                for (; c.p < c.end && *c.p >= '0' && *c.p <= '9'; c.p++) {
                    if (d > (ULLONG_MAX - (unsigned)(*c.p - '0')) / 10) goto bad_header;
                    d = d * 10 + (unsigned)(*c.p - '0');
                }
                if (c.p < c.end && (*c.p == 'L' || *c.p == 'l')) c.p++; /* Python 2 longs */
                shape[rank++] = d;
                if (!take(&c, ',')) {
                    if (!take(&c, ')')) goto bad_header;
                    if (rank == 1) goto bad_header; /* `(3)` is not a tuple */
                    break;
                }
            }
        } else {
            fail("input '%s': %s: unexpected or repeated key '%s' in the .npy header", t->name, t->path, key);
        }
        if (!take(&c, ',')) {
            if (!take(&c, '}')) goto bad_header;
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end || !have_descr || !have_fortran || !have_shape) goto bad_header;

    /* dtype: '<' or '=' (all supported targets are little-endian); for one-byte types also '|' */
    if (!(strlen(descr) == 3 && strcmp(descr + 1, dt->descr) == 0 &&
          (descr[0] == '<' || descr[0] == '=' || (dt->size == 1 && descr[0] == '|'))))
        fail("input '%s': %s has dtype '%s', expected '%c%s' (%s)", t->name, t->path, descr,
             dt->size == 1 ? '|' : '<', dt->descr, dt->name);
    if (fortran) fail("input '%s': %s is in Fortran order (fortran_order must be False)", t->name, t->path);
    if (H_NUM_SYMS > 0 && rank == t->rank) {
        /* Symbolic model: the file holds the logical tensor; symbols come from its dims. */
        size_t lbytes = dt->size;
        unsigned char *dense;
        for (i = 0; i < rank; i++) {
#if H_NUM_SYMS > 0 && SLMTVM_M(_NUM_INPUTS) > 0
            int sidx = h_in_dim_syms[t->dim_base + i];
            if (sidx >= 0) {
                if ((long long)shape[i] > h_sym_bounds[sidx])
                    fail("input '%s': %s has %s = %llu along axis %zu, above its bound %lld", t->name, t->path,
                         h_sym_names[sidx], shape[i], i, h_sym_bounds[sidx]);
                if (h_sym_set[sidx] && (unsigned long long)h_syms[sidx] != shape[i])
                    fail("input '%s': %s gives %s = %llu, another input gave %lld", t->name, t->path,
                         h_sym_names[sidx], shape[i], (long long)h_syms[sidx]);
                h_syms[sidx] = (int64_t)shape[i];
                h_sym_set[sidx] = 1;
            } else if (shape[i] > t->dims[i]) {
                fail("input '%s': %s has %llu along axis %zu, above its physical extent %llu", t->name, t->path,
                     shape[i], i, t->dims[i]);
            }
#endif
            t->ldims[i] = shape[i];
            lbytes *= (size_t)shape[i];
        }
        dense = xmalloc(lbytes);
        got = fread(dense, 1, lbytes, f);
        if (got != lbytes) fail("input '%s': %s: truncated data (%zu of %zu bytes)", t->name, t->path, got, lbytes);
        memset(t->data, 0, t->bytes);
        copy_logical(dense, t->data, t->ldims, t->dims, rank, dt->size, 1);
        free(dense);
    } else {
        if (rank != t->rank || (rank && memcmp(shape, t->dims, rank * sizeof shape[0]) != 0)) {
            format_shape(shape_s, sizeof shape_s, shape, rank, "[", "]");
            format_shape(want_s, sizeof want_s, t->dims, t->rank, "[", "]");
            fail("input '%s': %s has shape %s, expected %s", t->name, t->path, shape_s, want_s);
        }
        got = fread(t->data, 1, t->bytes, f);
        if (got != t->bytes)
            fail("input '%s': %s: truncated data (%zu of %zu bytes)", t->name, t->path, got, t->bytes);
    }
    extra = fgetc(f);
    if (extra != EOF) fail("input '%s': %s has data after the %zu bytes of the array", t->name, t->path, t->bytes);
    if (ferror(f)) fail("input '%s': %s: read error", t->name, t->path);
    fclose(f);
    free(header);
    if (t->dtype == H_DT_BOOL)
        for (i = 0; i < t->bytes; i++)
            if (t->data[i] > 1)
                fail("input '%s': %s: bool element %zu is %u (must be 0 or 1)", t->name, t->path, i, t->data[i]);
    return;
bad_header:
    fail("input '%s': %s: malformed .npy header", t->name, t->path);
}

/* Writes t as a .npy v1.0 file exactly as numpy's np.save does (header padded with spaces and
 * a final newline to a multiple of 64 bytes, with numpy's spare room for the first dim). */
static void write_output(const Tensor *t) {
    const DTypeInfo *dt = dtype_info(t->dtype);
    size_t cap = 160 + t->rank * 24, n, hlen, pad, i;
    char *h = xmalloc(cap + 128), *shape = xmalloc(cap);
    FILE *f;
    if (t->rank == 1) snprintf(shape, cap, "(%llu,)", t->dims[0]);
    else format_shape(shape, cap, t->dims, t->rank, "(", ")");
    n = (size_t)snprintf(h, cap, "{'descr': '%c%s', 'fortran_order': False, 'shape': %s, }",
                         dt->size == 1 ? '|' : '<', dt->descr, shape);
    if (t->rank > 0) { /* numpy leaves room to grow the first dim to 21 digits */
        char first[32];
        size_t digits = (size_t)snprintf(first, sizeof first, "%llu", t->dims[0]);
        for (i = digits; i < 21; i++) h[n++] = ' ';
    }
    hlen = n + 1;
    pad = 64 - (10 + hlen) % 64;
    for (i = 0; i < pad; i++) h[n++] = ' ';
    h[n++] = '\n';
    if (n > 65535) fail("output '%s': .npy header too long", t->name);
    f = fopen(t->path, "wb");
    if (!f) fail("output '%s': cannot create %s: %s", t->name, t->path, strerror(errno));
    if (fwrite("\x93NUMPY\x01\x00", 1, 8, f) != 8 || fputc((int)(n & 0xff), f) == EOF ||
        fputc((int)(n >> 8), f) == EOF || fwrite(h, 1, n, f) != n || fwrite(t->data, 1, t->bytes, f) != t->bytes)
        fail("output '%s': cannot write %s: %s", t->name, t->path, strerror(errno));
    if (fclose(f) != 0) fail("output '%s': cannot write %s: %s", t->name, t->path, strerror(errno));
    free(h);
    free(shape);
}

/* ---- Timing ---------------------------------------------------------------------------------- */

#if defined(CLOCK_MONOTONIC)
static double now_us(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) fail("clock_gettime(CLOCK_MONOTONIC) failed");
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}
#elif defined(__linux__) && defined(__LP64__)
/* <time.h> hides clock_gettime under -std=c99 (see the top); declare it with the Linux LP64
 * ABI: clockid_t is int, struct timespec is {time_t; long}, CLOCK_MONOTONIC is 1. */
struct h_timespec {
    time_t tv_sec;
    long tv_nsec;
};
extern int clock_gettime(int, struct h_timespec *);
static double now_us(void) {
    struct h_timespec ts;
    if (clock_gettime(1, &ts) != 0) fail("clock_gettime(CLOCK_MONOTONIC) failed");
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}
#else
#error "clock_gettime is not declared: compile with -D_POSIX_C_SOURCE=200809L"
#endif

#ifdef SLMTVM_PROFILE
/* ---- Kernel profile (profiling builds) ------------------------------------------------------ */

#define H_MAX_KERNELS 65536
static double h_prof_us[H_MAX_KERNELS];
static double h_prof_t;
static long h_prof_k = -1, h_prof_n;

/* Called by the model before kernel k, and with k = -1 after its last kernel. */
void slmtvm_profile(int32_t k);
void slmtvm_profile(int32_t k) {
    double t = now_us();
    if (h_prof_k >= 0 && h_prof_k < H_MAX_KERNELS) h_prof_us[h_prof_k] += t - h_prof_t;
    if (k >= 0 && k + 1 > h_prof_n) h_prof_n = k + 1;
    h_prof_k = k;
    h_prof_t = t;
}

static void profile_reset(void) {
    memset(h_prof_us, 0, sizeof h_prof_us);
    h_prof_k = -1;
}

/* Per-kernel mean time over `reps` runs, then the FMA peak: NAME_peak's iteration count
 * doubled until one call takes 20 ms, then the best of 5 calls. */
static void profile_report(long reps) {
    long k, i;
    int64_t iters = 1 << 16;
    double best = 0;
    float sink;
    for (k = 0; k < h_prof_n && k < H_MAX_KERNELS; k++) printf("kernel_us: %ld %.4f\n", k, h_prof_us[k] / (double)reps);
    for (;;) {
        double t0 = now_us(), t;
        h_peak(iters, &sink);
        t = now_us() - t0;
        if (t >= 20000.0 || iters >= ((int64_t)1 << 40)) break;
        iters *= 2;
    }
    for (i = 0; i < 5; i++) {
        double t0 = now_us(), t;
        h_peak(iters, &sink);
        t = now_us() - t0;
        if (best == 0 || t < best) best = t;
    }
    (void)sink;
    printf("peak_iters_per_us: %.6f\n", (double)iters / best);
}
#endif

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#if H_THREADS > 1
/* ---- Thread pool (threaded builds) ------------------------------------------------------------ */

/* A persistent pool: `workers` threads created once, each waiting for a job (a generation
 * number bumped under the mutex); the caller of parallel_for runs indices too. Indices are
 * handed out one by one under the mutex, so each runs exactly once. After a job a worker
 * polls the generation for a while (a model calls parallel_for for kernel after kernel) before
 * it sleeps on the condition variable. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, finished;
    long gen;
    int quit;
    slmtvm_task_fn task;
    void *arg;
    int64_t count, next, done;
    int workers;
    pthread_t *threads;
} Pool;

static Pool h_pool;
static long h_threads = 1; /* threads running the tasks (the caller included) */

#if defined(__GNUC__)
#define H_LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define H_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define H_SPIN 20000 /* polls before sleeping (some tens of microseconds to a millisecond) */
#if defined(__x86_64__) || defined(__i386__)
#define H_RELAX() __builtin_ia32_pause() /* leaves the core's other thread its share */
#elif defined(__aarch64__)
#define H_RELAX() __asm__ __volatile__("yield")
#else
#define H_RELAX() ((void)0)
#endif
#else
#define H_RELAX() ((void)0)
#define H_LOAD(x) (x)
#define H_STORE(x, v) ((x) = (v))
#define H_SPIN 0
#endif

/* Runs indices of the current job until none is left; called and returns with mu held. */
static void pool_work(Pool *p) {
    while (p->next < p->count) {
        int64_t i = p->next++;
        slmtvm_task_fn task = p->task;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        task(arg, i);
        pthread_mutex_lock(&p->mu);
        H_STORE(p->done, p->done + 1);
        if (p->done == p->count) pthread_cond_signal(&p->finished);
    }
}

static void *pool_worker(void *arg) {
    Pool *p = arg;
    long seen = 0;
    for (;;) {
        long spin;
        for (spin = 0; spin < H_SPIN && H_LOAD(p->gen) == seen && !H_LOAD(p->quit); spin++) H_RELAX();
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->gen;
        pool_work(p);
        pthread_mutex_unlock(&p->mu);
    }
}

/* The slmtvm_parallel_for_fn of the pool (ctx is the Pool). */
static void pool_parallel_for(void *ctx, int64_t count, slmtvm_task_fn task, void *arg) {
    Pool *p = ctx;
    long spin;
    if (count <= 0) return;
    pthread_mutex_lock(&p->mu);
    p->task = task;
    p->arg = arg;
    p->count = count;
    p->next = 0;
    H_STORE(p->done, 0);
    H_STORE(p->gen, p->gen + 1);
    pthread_cond_broadcast(&p->wake);
    pool_work(p);
    pthread_mutex_unlock(&p->mu);
    for (spin = 0; spin < H_SPIN && H_LOAD(p->done) < count; spin++) H_RELAX();
    pthread_mutex_lock(&p->mu);
    while (p->done < count) pthread_cond_wait(&p->finished, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* Starts the pool: SLMTVM_THREADS from the environment (1 to 1024), else NAME_THREADS. */
static void pool_start(void) {
    const char *env = getenv("SLMTVM_THREADS");
    pthread_attr_t attr;
    int k, e;
    h_threads = H_THREADS;
    if (env && *env) {
        char *end;
        errno = 0;
        h_threads = strtol(env, &end, 10);
        if (errno || *end || h_threads < 1 || h_threads > 1024)
            fail("SLMTVM_THREADS=%s: expected a thread count from 1 to 1024", env);
    }
    memset(&h_pool, 0, sizeof h_pool);
    if (pthread_mutex_init(&h_pool.mu, NULL) || pthread_cond_init(&h_pool.wake, NULL) ||
        pthread_cond_init(&h_pool.finished, NULL))
        fail("cannot initialize the thread pool's mutex");
    h_pool.workers = (int)h_threads - 1;
    h_pool.threads = xmalloc((size_t)(h_pool.workers ? h_pool.workers : 1) * sizeof *h_pool.threads);
    if (pthread_attr_init(&attr) || pthread_attr_setstacksize(&attr, (size_t)8 << 20))
        fail("cannot set the thread pool's stack size");
    for (k = 0; k < h_pool.workers; k++)
        if ((e = pthread_create(&h_pool.threads[k], &attr, pool_worker, &h_pool)) != 0)
            fail("cannot start thread %d of the pool: %s", k + 1, strerror(e));
    pthread_attr_destroy(&attr);
}

static void pool_stop(void) {
    int k;
    pthread_mutex_lock(&h_pool.mu);
    H_STORE(h_pool.quit, 1);
    pthread_cond_broadcast(&h_pool.wake);
    pthread_mutex_unlock(&h_pool.mu);
    for (k = 0; k < h_pool.workers; k++) pthread_join(h_pool.threads[k], NULL);
    free(h_pool.threads);
}
#endif

/* ---- Main ------------------------------------------------------------------------------------ */

static const char *status_name(int s) {
    if (s == H_ERR_NULL) return " (SLMTVM_ERR_NULL)";
    if (s == H_ERR_WORKSPACE_ALIGN) return " (SLMTVM_ERR_WORKSPACE_ALIGN)";
    if (s == H_ERR_SYMBOL) return " (SLMTVM_ERR_SYMBOL)";
    return "";
}

static void run_model(const void **in_ptrs, void **out_ptrs, void *ws) {
#if H_THREADS > 1
    slmtvm_parallel_for_fn pf = h_threads > 1 ? pool_parallel_for : NULL;
#if H_NUM_SYMS > 0
    int s = h_prun_sym(h_syms, (const void *const *)in_ptrs, (void *const *)out_ptrs, ws, pf, &h_pool);
#else
    int s = h_prun((const void *const *)in_ptrs, (void *const *)out_ptrs, ws, pf, &h_pool);
#endif
#elif H_NUM_SYMS > 0
    int s = h_run_sym(h_syms, (const void *const *)in_ptrs, (void *const *)out_ptrs, ws);
#else
    int s = h_run((const void *const *)in_ptrs, (void *const *)out_ptrs, ws);
#endif
    if (s != H_OK) fail("%s_run returned status %d%s", h_model, s, status_name(s));
}

static void release(Tensor *t, size_t count) {
    size_t k;
    for (k = 0; k < count; k++) {
        free(t[k].file);
        free(t[k].path);
        free(t[k].alloc);
        free(t[k].copy);
    }
    free(t);
}

/* Symbolic models: each output's logical elements, dense at its logical dims (what is
 * written to the .npy file). A second call (after the timed runs) compares with the first. */
static unsigned char **h_dense;
static size_t *h_dense_bytes;
static void logical_outputs(Tensor *out) {
#if H_NUM_SYMS > 0
    size_t k, j;
    int again = h_dense != NULL;
    if (!again) {
        h_dense = xmalloc((n_out ? n_out : 1) * sizeof *h_dense);
        h_dense_bytes = xmalloc((n_out ? n_out : 1) * sizeof *h_dense_bytes);
    }
    for (k = 0; k < n_out; k++) {
        size_t es = dtype_info(out[k].dtype)->size, lb = es;
        unsigned char *dense;
        for (j = 0; j < out[k].rank; j++) lb *= (size_t)out[k].ldims[j];
        dense = xmalloc(lb);
        copy_logical(dense, out[k].data, out[k].ldims, out[k].dims, out[k].rank, es, 0);
        if (out[k].dtype == H_DT_BOOL)
            for (j = 0; j < lb; j++)
                if (dense[j] > 1)
                    fail("%s_run wrote %u into element %zu of bool output '%s'", h_model, dense[j], j, out[k].name);
        if (again) {
            if (lb != h_dense_bytes[k] || memcmp(dense, h_dense[k], lb) != 0)
                fail("output '%s' differs between runs (the model must be deterministic and re-entrant)",
                     out[k].name);
            free(dense);
        } else {
            h_dense[k] = dense;
            h_dense_bytes[k] = lb;
        }
    }
#else
    (void)out;
#endif
}

static void check_after_run(Tensor *in, Tensor *out, Tensor *ws, const char *when) {
    size_t k, i;
    char what[128];
    snprintf(what, sizeof what, "%s_run%s", h_model, when);
    for (k = 0; k < n_in; k++) {
        check_guards(&in[k], what);
        if (memcmp(in[k].data, in[k].copy, in[k].bytes) != 0)
            fail("%s modified input '%s'", what, in[k].name);
    }
    for (k = 0; k < n_out; k++) {
        check_guards(&out[k], what);
        if (out[k].dtype == H_DT_BOOL && H_NUM_SYMS == 0)
            for (i = 0; i < out[k].bytes; i++)
                if (out[k].data[i] > 1)
                    fail("%s wrote %u into element %zu of bool output '%s'", what, out[k].data[i], i, out[k].name);
    }
    check_guards(ws, what);
}

int main(int argc, char **argv) {
    const unsigned int one = 1;
    long reps = 0;
    int a = 1;
    size_t k, j, ws_size;
    const char *in_dir, *out_dir;
    Tensor *in, *out, ws;
    unsigned long long *in_dims, *out_dims;
    const void **in_ptrs;
    void **out_ptrs;

    if (*(const unsigned char *)&one != 1) fail("big-endian hosts are not supported (tensors are little-endian)");
    if (a < argc && strcmp(argv[a], "-t") == 0) {
        char *end;
        if (a + 1 >= argc) fail("usage: %s [-t N] IN_DIR OUT_DIR (-t needs a count)", argv[0]);
        errno = 0;
        reps = strtol(argv[a + 1], &end, 10);
        if (errno || *end || end == argv[a + 1] || reps < 1 || reps > 10000000)
            fail("-t %s: expected a number of runs from 1 to 10000000", argv[a + 1]);
        a += 2;
    }
    if (argc - a != 2) fail("usage: %s [-t N] IN_DIR OUT_DIR", argc > 0 ? argv[0] : "run");
    in_dir = argv[a];
    out_dir = argv[a + 1];

    in = declare("input", n_in, h_in_names, h_in_dtypes, h_in_ranks, h_in_bytes, h_in_dims, "INPUT", &in_dims);
    out = declare("output", n_out, h_out_names, h_out_dtypes, h_out_ranks, h_out_bytes, h_out_dims,
                  "OUTPUT", &out_dims);
    ws_size = h_workspace_size();
    if ((unsigned long long)ws_size != h_workspace_size_macro)
        fail("%s_workspace_size() returns %zu but %s_WORKSPACE_SIZE is %llu", h_model, ws_size, h_upper,
             h_workspace_size_macro);
    if (ws_size > (size_t)-1 - 4 * (size_t)H_WS_ALIGN - 2 * GUARD_BYTES)
        fail("workspace of %zu bytes is too large", ws_size);

    /* Inputs: file names, buffers, contents. */
    for (k = 0; k < n_in; k++) {
        char *stem = file_stem(in[k].name);
        in[k].file = xmalloc(strlen(stem) + 5);
        sprintf(in[k].file, "%s.npy", stem);
        free(stem);
        for (j = 0; j < k; j++)
            if (strcmp(in[j].file, in[k].file) == 0)
                fail("inputs '%s' and '%s' would both be read from %s", in[j].name, in[k].name, in[k].file);
        in[k].path = join_path(in_dir, in[k].file);
    }
    for (k = 0; k < n_in; k++) {
        const DTypeInfo *dt = dtype_info(in[k].dtype);
        place(&in[k], H_IO_ALIGN ? (size_t)H_IO_ALIGN : dt->size);
        read_input(&in[k]);
        in[k].copy = memcpy(xmalloc(in[k].bytes), in[k].data, in[k].bytes);
    }
#if H_NUM_SYMS > 0
    for (j = 0; j < H_NUM_SYMS; j++)
        if (!h_sym_set[j]) fail("no input gives the value of symbol %s (it is not a dim of any input)", h_sym_names[j]);
#if SLMTVM_M(_NUM_INPUTS) > 0
    for (k = 0; k < n_in; k++) {
        int64_t want[64];
        h_in_logical((int)k, h_syms, want);
        for (j = 0; j < in[k].rank; j++)
            if ((unsigned long long)want[j] != in[k].ldims[j])
                fail("input '%s': %s has %llu along axis %zu, the symbols give %lld", in[k].name, in[k].path,
                     in[k].ldims[j], j, (long long)want[j]);
    }
#endif
#if SLMTVM_M(_NUM_OUTPUTS) > 0
    for (k = 0; k < n_out; k++) {
        int64_t d[64];
        h_out_logical((int)k, h_syms, d);
        for (j = 0; j < out[k].rank; j++) out[k].ldims[j] = (unsigned long long)d[j];
    }
#endif
#endif
    /* Outputs: file names deduplicated as `slmtvm run` does (stem, stem_1, stem_2, ...). */
    for (k = 0; k < n_out; k++) {
        char *stem = file_stem(out[k].name);
        size_t n = strlen(stem) + 32;
        unsigned long suffix = 0;
        out[k].file = xmalloc(n);
        for (;;) {
            int clash = 0;
            if (suffix) snprintf(out[k].file, n, "%s_%lu.npy", stem, suffix);
            else snprintf(out[k].file, n, "%s.npy", stem);
            for (j = 0; j < k && !clash; j++) clash = strcmp(out[j].file, out[k].file) == 0;
            if (!clash) break;
            suffix++;
        }
        free(stem);
        out[k].path = join_path(out_dir, out[k].file);
        place(&out[k], H_IO_ALIGN ? (size_t)H_IO_ALIGN : dtype_info(out[k].dtype)->size);
        memset(out[k].data, OUTPUT_FILL, out[k].bytes);
    }
    /* One workspace, aligned to exactly WORKSPACE_ALIGN (malloc + manual alignment: aligned_alloc
     * is C11 and posix_memalign is hidden under -std=c99 once <stdint.h> is in). */
    memset(&ws, 0, sizeof ws);
    ws.kind = "workspace";
    ws.name = h_model;
    ws.bytes = ws_size;
    place(&ws, (size_t)H_WS_ALIGN);
    memset(ws.data, WORKSPACE_FILL, ws.bytes);

    in_ptrs = xmalloc((size_t)(H_NUM_IN ? H_NUM_IN : 1) * sizeof *in_ptrs);
    out_ptrs = xmalloc((size_t)(H_NUM_OUT ? H_NUM_OUT : 1) * sizeof *out_ptrs);
    for (k = 0; k < n_in; k++) in_ptrs[k] = in[k].data;
    for (k = 0; k < n_out; k++) out_ptrs[k] = out[k].data;

#if H_THREADS > 1
    pool_start();
#endif
    run_model(in_ptrs, out_ptrs, ws.data);
    check_after_run(in, out, &ws, "");
    logical_outputs(out);
    for (k = 0; k < n_out; k++) {
        char shape[1024];
        Tensor view = out[k];
        if (H_NUM_SYMS > 0) {
            view.data = h_dense[k];
            view.bytes = h_dense_bytes[k];
            view.dims = out[k].ldims;
        }
        write_output(&view);
        format_shape(shape, sizeof shape, view.dims, view.rank, "[", "]");
        put_clean(out[k].name);
        printf(": %s%s -> ", dtype_info(out[k].dtype)->name, shape);
        put_clean(out[k].path);
        putchar('\n');
    }
    fflush(stdout);

    if (reps > 0) {
        double *us = xmalloc((size_t)reps * sizeof *us);
        long r;
        for (k = 0; k < n_out; k++) {
            out[k].copy = memcpy(xmalloc(out[k].bytes), out[k].data, out[k].bytes);
            memset(out[k].data, OUTPUT_FILL, out[k].bytes);
        }
#ifdef SLMTVM_PROFILE
        profile_reset();
#endif
        for (r = 0; r < reps; r++) {
            double t0 = now_us();
            run_model(in_ptrs, out_ptrs, ws.data);
            us[r] = now_us() - t0;
        }
        check_after_run(in, out, &ws, " (timed runs)");
        logical_outputs(out);
        for (k = 0; k < n_out && H_NUM_SYMS == 0; k++)
            if (memcmp(out[k].data, out[k].copy, out[k].bytes) != 0)
                fail("output '%s' differs between runs (the model must be deterministic and re-entrant)",
                     out[k].name);
        qsort(us, (size_t)reps, sizeof *us, cmp_double);
        printf("latency_us: %.3f %.3f %.3f\n",
               reps % 2 ? us[reps / 2] : (us[reps / 2 - 1] + us[reps / 2]) / 2, us[0], us[reps - 1]);
#ifdef SLMTVM_PROFILE
        profile_report(reps);
#endif
        free(us);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) fail("cannot write to stdout");
#if H_THREADS > 1
    pool_stop();
#endif
    release(in, n_in);
    release(out, n_out);
    free(ws.alloc);
    free(in_dims);
    free(out_dims);
    free(in_ptrs);
    free(out_ptrs);
    return 0;
}
