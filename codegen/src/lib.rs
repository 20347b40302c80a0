//! Code generation for slmtvm: a graph with static shapes becomes one relocatable object with
//! an exported `<name>_run` entry, its weights in `.rodata`, and every intermediate tensor in
//! one caller-provided arena planned here.
//!
//! # Pipeline
//! 1. [`plan::plan_memory`]: storage of every value (caller input/output buffers, `.rodata`
//!    constants, arena offsets by liveness with views and in-place reuse) and the lower bound.
//! 2. [`kernels`]: one local Cranelift function per node (a kernel), taking the base pointers of its
//!    inputs and outputs; loop nests over the static shapes. Vector code (`F32X4`) only where the
//!    target has vectors (`slmtvm_targets::Target::vector`; never on scalar riscv64: Cranelift
//!    panics on vector types without `has_v`). No libm: exp/tanh/erf/sigmoid/log as inline
//!    polynomials with documented error. Without native FMA (x86_64 baseline), mul + add, never
//!    `fma` (Cranelift would call `fmaf`).
//! 3. `object`: `ObjectModule` (cranelift-object) with weights as local data objects aligned to
//!    64 bytes (also, or only, packed into the assembled microkernels' panels where a product
//!    reads them so: [`pack`]), the kernels as local functions, and two exports:
//!    `int <name>_run(const void* const* inputs, void* const* outputs, void* workspace)` (status
//!    codes: 0 ok, 1 null pointer, 2 misaligned workspace) and `size_t <name>_workspace_size(void)`.
//!    Deterministic bytes: functions and data defined in graph order, no hash-map iteration.
//! 4. [`header`] / [`manifest`]: `<name>.h` with the macros `runtime-stub/harness.c` reads (see
//!    `runtime-stub/README.md`), and `<name>.json`. [`compile`] returns all three outputs
//!    ([`Compiled`]); a caller adds only the provenance codegen cannot know.
//!
//! # Layers
//! Every module dependency points down (`tests/layers.rs` checks the `crate::` paths):
//! 0. [`error`], [`abi`] (status codes, the profiling loop's width), [`math`] (the
//!    approximations, generic over their backend): nothing else from this crate;
//! 1. [`asm`]: the assembled x86 microkernels and vector math ([`math`]'s third backend);
//! 2. [`emit`]: the kernel builder `Kb` and the Cranelift backend of [`math`] (`emit::math`);
//! 3. [`layout`], [`pack`]: physical shapes, symbols, packed weight panels;
//! 4. [`plan`]: the memory plan;
//! 5. [`kernels`]: one family of operators per file;
//! 6. [`object`]: the relocatable object; 7. [`header`]: `<name>.h`, [`manifest`]: `<name>.json`.
//!
//! Tests: the node conformance cases and the real models compiled for every target preset, run
//! natively or under qemu-user through `runtime-stub/harness.c`, compared with the expected
//! outputs; the object checked for undefined symbols other than memcpy/memset.
#![warn(missing_docs)]

pub mod abi;
pub mod asm;
pub mod emit;
pub mod error;
pub mod header;
pub mod kernels;
pub mod layout;
pub mod manifest;
pub mod math;
pub mod object;
pub mod pack;
pub mod plan;

pub use error::{Error, Result};
pub use manifest::Manifest;
pub use plan::{MemoryPlan, Storage, plan_memory};

/// A compiled model: the three files of a build and the memory plan behind them.
#[derive(Debug)]
pub struct Compiled {
    /// `<name>.o`: the relocatable ELF object.
    pub object: Vec<u8>,
    /// `<name>.h`.
    pub header: String,
    /// `<name>.json` ([`Manifest::to_json`]), without the caller's provenance.
    pub manifest: Manifest,
    /// The memory plan (physical dims, symbols, storage of every value).
    pub plan: MemoryPlan,
}

/// Compiles `g` for `target` into an object whose symbols are prefixed by `name` (a C
/// identifier), its header and its manifest: [`object::compile`] with the target's ISA and
/// [`emit::Caps`].
pub fn compile(g: &slmtvm_ir::Graph, name: &str, target: &slmtvm_targets::Target) -> Result<Compiled> {
    compile_with(g, name, target, &Options::default())
}

/// Kernels with fewer operations than this ([`slmtvm_ir::Graph::node_flops`]) stay serial in a
/// threaded build ([`Options::threads`]): a `parallel_for` (waking threads, waiting for them)
/// costs some microseconds, more than splitting a small kernel saves.
pub const SPLIT_MIN_FLOPS: u64 = 1 << 20;

/// The most tasks a kernel may be split into ([`Options::threads`]).
pub const MAX_THREADS: usize = 256;

/// How [`compile_with`] compiles, beyond the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// A profiling build: `<name>_run` calls the imported `void slmtvm_profile(int32_t k)`
    /// before kernel `k` (in [`object::Compiled::kernel_list`] order) and with `k = -1` after
    /// the last, and the object exports `void <name>_peak(int64_t iters, float* out)`, a loop
    /// of `iters` × [`abi::PEAK_FMAS`] independent multiply-adds at the target's vector
    /// width (the FMA peak the kernels are measured against; `out` receives one float so
    /// nothing is optimized away).
    pub profile: bool,
    /// The matrix products' schedule (microkernel, register tile, K block), instead of the
    /// target's default ([`slmtvm_targets::Target::schedule`]); it must be valid
    /// ([`slmtvm_targets::Schedule::validate`]) and its microkernel one the target has
    /// ([`slmtvm_targets::Target::microkernels`]).
    pub schedule: Option<slmtvm_targets::Schedule>,
    /// Tasks per split kernel, 1 to [`MAX_THREADS`] (default 1: a serial object). Above 1, the
    /// outer loop (row blocks, batches, attention heads) of every matrix product, Dense,
    /// FusedMlp and Attention kernel of at least `split_min_flops` operations is divided into
    /// `threads` tasks of whole register tiles, and the object also exports
    /// `int <name>_run_parallel(<the arguments of <name>_run>, slmtvm_parallel_for_fn pf,
    /// void *ctx)`, which runs each split kernel as `pf(ctx, threads, task, arg)` (every index
    /// once, in any order, possibly concurrently; it returns when all are done). `<name>_run`
    /// (and a NULL `pf`) runs the tasks one after another. Every element is computed with the
    /// same arithmetic whatever the split: the outputs are the serial build's bits.
    pub threads: usize,
    /// Kernels of fewer operations stay serial when `threads` > 1 (default
    /// [`SPLIT_MIN_FLOPS`]; 0 splits every kernel that can be).
    pub split_min_flops: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options { profile: false, schedule: None, threads: 1, split_min_flops: SPLIT_MIN_FLOPS }
    }
}

/// [`compile`] with `opts`.
pub fn compile_with(
    g: &slmtvm_ir::Graph,
    name: &str,
    target: &slmtvm_targets::Target,
    opts: &Options,
) -> Result<Compiled> {
    let isa = target.isa()?;
    let mut caps = emit::Caps::of(target);
    if let Some(s) = opts.schedule {
        let s = s.validate()?;
        let have = target.microkernels();
        if !have.contains(&s.kernel) {
            let names: Vec<&str> = have.iter().map(|k| k.name()).collect();
            return Err(Error::ScheduleKernel {
                schedule: s.to_string(),
                target: target.to_string(),
                kernel: s.kernel.to_string(),
                have: names.join(", "),
            });
        }
        caps.schedule = s;
    }
    if !(1..=MAX_THREADS).contains(&opts.threads) {
        return Err(Error::Threads { given: opts.threads, max: MAX_THREADS });
    }
    let par = object::Parallel { tasks: opts.threads, min_flops: opts.split_min_flops };
    let o = object::compile(g, name, isa, caps, opts.profile, par)?;
    Ok(Compiled {
        header: header::header(g, name, &o.plan, opts.threads),
        manifest: Manifest::of(g, name, target, &o),
        object: o.object,
        plan: o.plan,
    })
}
