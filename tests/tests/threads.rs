//! Threaded builds (`Options::threads`): the heavy kernels split into tasks run through a
//! caller's `parallel_for` and give the serial build's bits, on every target preset (natively
//! and under qemu-user), for MatMul (batched: batches or rows split), Gemm, MatMulInteger,
//! Dense, FusedMlp and Attention (heads or query blocks split) at odd row counts (1, 3, 17, 33,
//! 65, 130: fewer rows than tasks, edges), symbolic rows at run-time sizes, and two committed
//! models; the task function runs `threads` times per split kernel (a counting `parallel_for`),
//! a NULL `parallel_for` and `NAME_run` run the tasks serially with the same results, and two
//! threaded models' headers compile in one file.

use slmtvm_codegen::Options;
use slmtvm_frontend::{LoadOptions, load_onnx, npy};
use slmtvm_ir::ops::{Attention, Dense, FusedMlp, Gemm, MatMul, MatMulInteger, QDense, UnaryOp};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo, ValueId};
use slmtvm_targets::Target;
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::{Job, run_batch_with, runnable_presets};
use slmtvm_tests::target_dir;
use std::fmt::Write as _;
use std::path::Path;

/// A graph under construction with one data set.
struct G {
    g: Graph,
    data: Vec<Tensor>,
    rng: Lcg,
}

impl G {
    fn new(name: &str) -> G {
        G { g: Graph::new(name), data: Vec::new(), rng: Lcg(3) }
    }
    fn next(&mut self) -> u64 {
        self.rng.bits() >> 22
    }
    fn f32s(&mut self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (self.next() % 1000) as f32 / 250.0 - 2.0).collect();
        Tensor::from_vec(shape, v).unwrap()
    }
    fn input(&mut self, t: Tensor) -> ValueId {
        let name = format!("x{}", self.g.values.len());
        let v = self.g.add_input(name, TypeInfo::new(t.dtype(), Shape::known(t.shape())));
        self.data.push(t);
        v
    }
    fn finput(&mut self, shape: &[usize]) -> ValueId {
        let t = self.f32s(shape);
        self.input(t)
    }
    fn constant(&mut self, shape: &[usize]) -> ValueId {
        let t = self.f32s(shape);
        self.g.add_const(format!("c{}", self.g.values.len()), t)
    }
    fn node(&mut self, op: Op, ins: Vec<Option<ValueId>>) {
        let n = self.g.nodes.len();
        let y = self.g.add_node(format!("n{n}"), op, ins, &[format!("y{n}")])[0];
        self.g.outputs.push(y);
    }
}

/// Every splittable kernel at odd and edge sizes.
fn kernels() -> G {
    let mut g = G::new("kernels");
    for (m, k, n) in [(1, 5, 7), (3, 17, 9), (17, 33, 65), (65, 16, 24), (130, 8, 12)] {
        let (a, b) = (g.finput(&[m, k]), g.constant(&[k, n]));
        g.node(Op::MatMul(MatMul {}), vec![Some(a), Some(b)]);
    }
    // Batched: more batches than row blocks (the batches split), and fewer (the rows).
    for (ad, bd) in [([5, 3, 17], [5, 17, 9]), ([2, 65, 8], [2, 8, 7])] {
        let (a, b) = (g.finput(&ad), g.finput(&bd));
        g.node(Op::MatMul(MatMul {}), vec![Some(a), Some(b)]);
    }
    // Gemm with transposed B (the dot schedule) and a C row, and both transposed (scalar).
    let (a, b, c) = (g.finput(&[17, 33]), g.constant(&[40, 33]), g.constant(&[40]));
    g.node(Op::Gemm(Gemm { alpha: 0.5, beta: 2.0, trans_a: false, trans_b: true }), vec![Some(a), Some(b), Some(c)]);
    let (a, b) = (g.finput(&[9, 3]), g.constant(&[5, 9]));
    g.node(Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a: true, trans_b: true }), vec![Some(a), Some(b), None]);
    // MatMulInteger, u8 times i8.
    let ua: Vec<u8> = (0..17 * 24).map(|_| g.next() as u8).collect();
    let ib: Vec<i8> = (0..24 * 16).map(|_| g.next() as i8).collect();
    let a = g.input(Tensor::from_vec(&[17, 24], ua).unwrap());
    let b = g.g.add_const("ib", Tensor::from_vec(&[24, 16], ib).unwrap());
    g.node(Op::MatMulInteger(MatMulInteger {}), vec![Some(a), Some(b)]);
    // QDense (x86_64-v3: the vpmaddwd path; 50 rows of K 4001 are three row blocks there),
    // u8 activations with a zero point, i8 weights with one per column, scales, a bias.
    for (rows, k, n) in [(17usize, 24usize, 21usize), (50, 4001, 2)] {
        let ua: Vec<u8> = (0..rows * k).map(|_| g.next() as u8).collect();
        let ib: Vec<i8> = (0..k * n).map(|_| g.next() as i8).collect();
        let zb: Vec<i8> = (0..n).map(|_| g.next() as i8).collect();
        let a = g.input(Tensor::from_vec(&[rows, k], ua).unwrap());
        let w = g.g.add_const(format!("qw{k}"), Tensor::from_vec(&[k, n], ib).unwrap());
        let za = g.g.add_const(format!("qza{k}"), Tensor::scalar(3u8));
        let zb = g.g.add_const(format!("qzb{k}"), Tensor::from_vec(&[n], zb).unwrap());
        let (sa, sb, bias) = (g.constant(&[]), g.constant(&[n]), g.constant(&[n]));
        let ins = vec![Some(a), Some(w), Some(za), Some(zb), Some(sa), Some(sb), Some(bias)];
        g.node(Op::QDense(QDense { activation: None }), ins);
    }
    for (rows, act) in
        [(1, None), (3, Some(UnaryOp::Relu)), (17, Some(UnaryOp::Gelu { tanh_approx: false })), (65, None)]
    {
        let (x, w, b) = (g.finput(&[rows, 20]), g.constant(&[20, 19]), g.constant(&[19]));
        g.node(Op::Dense(Dense { activation: act }), vec![Some(x), Some(w), Some(b)]);
    }
    for rows in [1, 17, 33] {
        let (x, wg, wu, wd) =
            (g.finput(&[rows, 12]), g.constant(&[12, 40]), g.constant(&[12, 40]), g.constant(&[40, 9]));
        g.node(Op::FusedMlp(FusedMlp { activation: UnaryOp::Silu }), vec![Some(x), Some(wg), Some(wu), Some(wd)]);
    }
    // Attention: more heads than query blocks (heads split), one head of 5 query blocks.
    let (q, k, v) = (g.finput(&[1, 4, 7, 16]), g.finput(&[1, 2, 19, 16]), g.finput(&[1, 2, 19, 12]));
    g.node(Op::Attention(Attention { scale: Some(0.25), causal: true }), vec![Some(q), Some(k), Some(v)]);
    let (q, k, v) = (g.finput(&[1, 1, 130, 8]), g.finput(&[1, 1, 130, 8]), g.finput(&[1, 1, 130, 8]));
    g.node(Op::Attention(Attention { scale: None, causal: false }), vec![Some(q), Some(k), Some(v)]);
    g.g.infer().unwrap();
    g
}

/// Dense, FusedMlp and MatMul over symbolic rows `[1, s<=40, 8]` and a batched MatMul over
/// `[2, s<=40, 8]` (rows split in each batch), run at s = 1, 5 and 40; an Attention of one
/// head over `t<=130` queries and keys (query blocks split), run at t = 1, 29 and 130.
fn symbolic() -> (Graph, Vec<Vec<Tensor>>) {
    let mut g = G::new("symbolic");
    let x = g.g.add_input("x", TypeInfo::new(DType::F32, Shape::parse("[1, s<=40, 8]").unwrap()));
    let xb = g.g.add_input("xb", TypeInfo::new(DType::F32, Shape::parse("[2, s<=40, 8]").unwrap()));
    let qkv: Vec<ValueId> = ["q", "k", "v"]
        .iter()
        .map(|n| g.g.add_input(*n, TypeInfo::new(DType::F32, Shape::parse("[1, 1, t<=130, 8]").unwrap())))
        .collect();
    let (w, b) = (g.constant(&[8, 19]), g.constant(&[19]));
    g.node(Op::Dense(Dense { activation: Some(UnaryOp::Silu) }), vec![Some(x), Some(w), Some(b)]);
    let (wg, wu, wd) = (g.constant(&[8, 40]), g.constant(&[8, 40]), g.constant(&[40, 6]));
    g.node(Op::FusedMlp(FusedMlp { activation: UnaryOp::Silu }), vec![Some(x), Some(wg), Some(wu), Some(wd)]);
    let w = g.constant(&[8, 13]);
    g.node(Op::MatMul(MatMul {}), vec![Some(x), Some(w)]);
    let w = g.constant(&[8, 5]);
    g.node(Op::MatMul(MatMul {}), vec![Some(xb), Some(w)]);
    g.node(Op::Attention(Attention { scale: None, causal: true }), qkv.iter().map(|&v| Some(v)).collect());
    g.g.infer().unwrap();
    let sets = [(1usize, 1usize), (5, 29), (40, 130)]
        .iter()
        .map(|&(s, t)| {
            vec![
                g.f32s(&[1, s, 8]),
                g.f32s(&[2, s, 8]),
                g.f32s(&[1, 1, t, 8]),
                g.f32s(&[1, 1, t, 8]),
                g.f32s(&[1, 1, t, 8]),
            ]
        })
        .collect();
    (g.g, sets)
}

/// The committed models, optimized (Dense, Attention and FusedMlp fused), at their recorded
/// inputs.
fn models() -> Vec<(String, Graph, Vec<Tensor>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    ["bert_tiny", "llama_tiny"]
        .iter()
        .map(|m| {
            let d = dir.join(m);
            let g0 = load_onnx(&d.join("model.onnx"), &LoadOptions::default()).unwrap();
            let read =
                |name: &str| npy::read_npy(&d.join("inputs").join(format!("{}.npy", npy::file_stem(name)))).unwrap();
            let mut opts = LoadOptions::default();
            for &i in &g0.inputs {
                let name = &g0.value(i).name;
                opts.shapes.insert(name.clone(), Shape::known(read(name).shape()));
            }
            let g = load_onnx(&d.join("model.onnx"), &opts).unwrap();
            let (g, _) = slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options::default()).unwrap();
            let inputs = g.inputs.iter().map(|&i| read(&g.value(i).name)).collect();
            (m.to_string(), g, inputs)
        })
        .collect()
}

fn threaded(threads: usize) -> Options {
    Options { threads, split_min_flops: 0, ..Options::default() }
}

/// The kernels `g` compiled for x86_64 with `threads` splits into more than one task.
fn split_kernels(g: &Graph, threads: usize) -> Vec<String> {
    let t = Target::from_spec("x86_64").unwrap();
    let c = slmtvm_codegen::compile_with(g, "m", &t, &threaded(threads)).unwrap();
    c.manifest.kernel_list.iter().filter(|k| k.tasks > 1).map(|k| format!("{} {}", k.op, k.node)).collect()
}

#[test]
fn every_splittable_kernel_is_split() {
    let g = kernels();
    for threads in [2, 3] {
        let split = split_kernels(&g.g, threads);
        assert_eq!(split.len(), g.g.nodes.len(), "{threads} threads: only {split:?}");
        // The threshold keeps small kernels serial (each node here is well below it).
        let t = Target::from_spec("x86_64").unwrap();
        let c = slmtvm_codegen::compile_with(&g.g, "m", &t, &Options { threads, ..Options::default() }).unwrap();
        assert!(c.manifest.kernel_list.iter().all(|k| k.tasks == 1), "{threads} threads, default threshold");
    }
    let (s, _) = symbolic();
    assert_eq!(split_kernels(&s, 2).len(), 5);
    // The models: every product, Dense, FusedMlp and Attention (all of them computed).
    for (name, g, _) in models() {
        let heavy = ["MatMul", "Gemm", "MatMulInteger", "Dense", "FusedMlp", "Attention"];
        let want = g.nodes.iter().filter(|n| heavy.contains(&n.op.kind_name())).count();
        let split = split_kernels(&g, 2);
        assert!(split.iter().any(|k| k.starts_with("Attention")), "{name}: {split:?}");
        assert_eq!(split.len(), want, "{name}: {split:?}");
    }
    assert!(
        slmtvm_codegen::compile_with(&g.g, "m", &Target::from_spec("x86_64").unwrap(), &threaded(0))
            .unwrap_err()
            .to_string()
            .contains("threads must be 1 to 256")
    );
}

/// Raw bytes of each output.
fn bits(ts: &[Tensor]) -> Vec<Vec<u8>> {
    ts.iter().map(|t| t.to_le_bytes()).collect()
}

#[test]
fn threaded_builds_give_the_serial_bits_on_every_target() {
    let k = kernels();
    let (s, sets) = symbolic();
    let models = models();
    let mut graphs: Vec<(String, &Graph, Vec<Vec<Tensor>>)> =
        vec![("kernels".into(), &k.g, vec![k.data.clone()]), ("symbolic".into(), &s, sets)];
    graphs.extend(models.iter().map(|(n, g, i)| (n.clone(), g, vec![i.clone()])));
    let counts = [1, 2, 3];
    let mut jobs = Vec::new();
    let mut opts = Vec::new();
    for (_, g, data) in &graphs {
        for &n in &counts {
            jobs.push(Job { graph: g, data: data.clone() });
            opts.push(threaded(n));
        }
    }
    let presets = runnable_presets();
    assert!(presets.iter().any(|t| t.name() == "aarch64") && presets.iter().any(|t| t.name() == "riscv64-v"));
    let mut failures = Vec::new();
    for t in &presets {
        let dir = target_dir().join("slmtvm-cross").join(format!("threads-{}-{}", t.name(), std::process::id()));
        let res = run_batch_with(t, &jobs, &dir, &opts);
        for (gi, (name, _, data)) in graphs.iter().enumerate() {
            let serial = &res[gi * counts.len()];
            for (c, &n) in counts.iter().enumerate().skip(1) {
                let par = &res[gi * counts.len() + c];
                for d in 0..data.len() {
                    match (&serial[d], &par[d]) {
                        (Ok(a), Ok(b)) if bits(a) == bits(b) => {}
                        (Ok(_), Ok(_)) => failures.push(format!("{} {name} set {d}: {n} threads differ", t.name())),
                        (Err(e), _) | (_, Err(e)) => failures.push(format!("{} {name} set {d} ({n}): {e}", t.name())),
                    }
                }
            }
        }
        eprintln!("{}: {} graphs at {counts:?} threads", t.name(), graphs.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A C program that includes the headers of `ma` (3 threads), `mb` (2 threads) and `ms` (the
/// same graph as `ma`, serial): it runs `ma` through a counting `parallel_for` (which checks
/// the count and that every index comes once, running them last to first), through a NULL
/// one and through `ma_run`, and `ms_run`, and compares the outputs' bytes.
const COUNTING: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static long calls, bad;
static void counting_for(void *ctx, int64_t count, slmtvm_task_fn task, void *arg) {
    char seen[64] = {0};
    if (ctx != (void *)&calls || count != *ctx_count) bad++;
    calls++;
    for (int64_t i = count; i-- > 0;) {
        if (i < 64) seen[i]++;
        task(arg, i);
    }
    for (int64_t i = 0; i < count && i < 64; i++) if (seen[i] != 1) bad++;
}
static unsigned char *fill(size_t bytes, unsigned seed) {
    float *p = malloc(bytes);
    for (size_t i = 0; i < bytes / 4; i++) { seed = seed * 1103515245u + 12345u; p[i] = (float)((seed >> 16) % 17) * 0.25f - 2.0f; }
    return (unsigned char *)p;
}
#define RUN(M, U, CALL, OUTS)                                                                              \
    do {                                                                                                    \
        static const size_t ib[] = U##_INPUT_BYTES_LIST, ob[] = U##_OUTPUT_BYTES_LIST;                      \
        const void *in[U##_NUM_INPUTS]; void *out[U##_NUM_OUTPUTS];                                         \
        for (int k = 0; k < U##_NUM_INPUTS; k++) in[k] = fill(ib[k], 7u + (unsigned)k);                     \
        for (int k = 0; k < U##_NUM_OUTPUTS; k++) { out[k] = malloc(ob[k]); memset(out[k], 0xFF, ob[k]); OUTS[k] = out[k]; } \
        void *ws = aligned_alloc(U##_WORKSPACE_ALIGN, (M##_workspace_size() + 63) / 64 * 64 + 64);          \
        if (CALL != SLMTVM_OK) { printf("status\n"); return 1; }                                            \
        free(ws);                                                                                           \
    } while (0)
int main(void) {
    void *a[MA_NUM_OUTPUTS], *b[MA_NUM_OUTPUTS], *c[MA_NUM_OUTPUTS], *s[MA_NUM_OUTPUTS], *e[MB_NUM_OUTPUTS];
    static const size_t ob[] = MA_OUTPUT_BYTES_LIST;
    RUN(ma, MA, ma_run_parallel(in, out, ws, counting_for, &calls), a);
    printf("calls %ld bad %ld\n", calls, bad);
    RUN(ma, MA, ma_run_parallel(in, out, ws, NULL, NULL), b);
    RUN(ma, MA, ma_run(in, out, ws), c);
    RUN(ms, MS, ms_run(in, out, ws), s);
    calls = 0;
    RUN(mb, MB, mb_run_parallel(in, out, ws, counting_for, &calls), e);
    printf("mb calls %ld bad %ld\n", calls, bad);
    (void)e;
    for (int k = 0; k < MA_NUM_OUTPUTS; k++)
        printf("output %d: %s %s %s\n", k, memcmp(a[k], b[k], ob[k]) ? "differs" : "same",
               memcmp(a[k], c[k], ob[k]) ? "differs" : "same", memcmp(a[k], s[k], ob[k]) ? "differs" : "same");
    return 0;
}
"#;

#[test]
fn the_task_function_runs_once_per_index_and_null_runs_serially() {
    // Built for this machine's architecture and run natively.
    let t = Target::from_spec(slmtvm_tests::cross::native_preset()).unwrap();
    t.check_tools().unwrap();
    let k = kernels();
    let (mb_graph, _) = symbolic();
    let mb_graph = {
        // A static variant of the symbolic graph (the counting program passes no symbols).
        let mut g = mb_graph;
        g.set_input_shape("x", &Shape::known(&[1, 33, 8])).unwrap();
        g.set_input_shape("xb", &Shape::known(&[2, 33, 8])).unwrap();
        for n in ["q", "k", "v"] {
            g.set_input_shape(n, &Shape::known(&[1, 1, 77, 8])).unwrap();
        }
        g
    };
    let dir = target_dir().join("slmtvm-threads").join(format!("counting-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::new();
    let mut objects = Vec::new();
    let mut split = Vec::new();
    for (name, g, threads) in [("ma", &k.g, 3), ("mb", &mb_graph, 2), ("ms", &k.g, 1)] {
        let c = slmtvm_codegen::compile_with(g, name, &t, &threaded(threads)).unwrap();
        split.push(c.manifest.kernel_list.iter().filter(|k| k.tasks > 1).count());
        let h = &c.header;
        assert_eq!(h.contains("typedef void (*slmtvm_parallel_for_fn)"), threads > 1, "{name}");
        std::fs::write(dir.join(format!("{name}.h")), h).unwrap();
        std::fs::write(dir.join(format!("{name}.o")), &c.object).unwrap();
        objects.push(dir.join(format!("{name}.o")));
        let _ = writeln!(src, "#include \"{name}.h\"");
    }
    assert_eq!(split, [k.g.nodes.len(), 5, 0]);
    // The counting parallel_for checks its count against the model it serves (set per run).
    src.push_str("static int64_t count_now = MA_THREADS;\nstatic const int64_t *ctx_count = &count_now;\n");
    src.push_str(COUNTING.replace("calls = 0;", "calls = 0; count_now = MB_THREADS;").as_str());
    let c_file = dir.join("counting.c");
    std::fs::write(&c_file, src).unwrap();
    let exe = dir.join("counting");
    let mut inputs: Vec<&Path> = vec![&c_file];
    inputs.extend(objects.iter().map(|p| p.as_path()));
    t.link(&["-O1", "-std=c11", "-Wall", "-Werror", "-Wno-unused-function"], &inputs, &exe).unwrap();
    let out = std::process::Command::new(&exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("calls {} bad 0\n", split[0])), "{text}");
    assert!(text.contains(&format!("mb calls {} bad 0\n", split[1])), "{text}");
    assert_eq!(text.matches(": same same same\n").count(), k.g.outputs.len(), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
