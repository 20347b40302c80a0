//! Assembles the relocatable object: weights as read-only data, one local function per kernel,
//! and the exported `<name>_run` / `<name>_workspace_size` entry points.

use crate::abi::{PEAK_FMAS, status};
use crate::emit::{Caps, Kb};
use crate::pack::{PackedRead, Packing};
use crate::plan::{MemoryPlan, Storage, plan_memory};
use crate::{Error, Result};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{AbiParam, InstBuilder, UserExternalName, UserFuncName, Value, types};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module, default_libcall_names};
use cranelift_object::{ObjectBuilder, ObjectModule};
use slmtvm_ir::{Graph, ValueId};
use slmtvm_targets::Microkernel;
use std::collections::BTreeMap;

/// How `<name>_run_parallel` splits kernels across tasks (see [`crate::Options::threads`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallel {
    /// Tasks per split kernel; 1 builds the serial object (no `<name>_run_parallel`).
    pub tasks: usize,
    /// Kernels of fewer operations ([`Graph::node_flops`]) stay serial.
    pub min_flops: u64,
}

/// The operators whose kernels may be split across tasks: their outer loop (row blocks,
/// batches, heads) takes the split ([`crate::emit::Kb::take_share`]).
fn splittable(op: &slmtvm_ir::Op) -> bool {
    use slmtvm_ir::Op;
    matches!(
        op,
        Op::MatMul(_)
            | Op::Gemm(_)
            | Op::MatMulInteger(_)
            | Op::QDense(_)
            | Op::Dense(_)
            | Op::FusedMlp(_)
            | Op::Attention(_)
    )
}

/// The object of a compiled model and what went into it ([`crate::Compiled`] adds the header
/// and the manifest).
#[derive(Debug)]
pub struct Object {
    /// The relocatable ELF object.
    pub object: Vec<u8>,
    /// Its memory plan.
    pub plan: MemoryPlan,
    /// Bytes of weights in `.rodata` (packed copies included).
    pub weight_bytes: usize,
    /// Bytes of the weights packed into the assembled microkernels' panels ([`crate::pack`];
    /// padding included), part of `weight_bytes`.
    pub packed_bytes: usize,
    /// Number of kernels emitted.
    pub kernels: usize,
    /// Bytes of machine code of all functions.
    pub code_bytes: usize,
    /// Every kernel, in call order.
    pub kernel_list: Vec<KernelInfo>,
    /// The matrix products' schedule it was built with.
    pub schedule: slmtvm_targets::Schedule,
    /// A profiling build ([`crate::Options::profile`]).
    pub profile: bool,
    /// Tasks per split kernel ([`crate::Options::threads`]).
    pub threads: usize,
}

/// One kernel of a compiled model: a local function of the object (in the manifest without
/// its lanes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelInfo {
    /// Its (local) symbol name.
    pub symbol: String,
    /// The graph node it computes.
    pub node: String,
    /// The node's operator (`MatMul`, `Add`, ...).
    pub op: String,
    /// Bytes of machine code.
    pub code_bytes: usize,
    /// The node's operations (at the symbols' bounds), as the IR counts them.
    pub flops: u64,
    /// f32 lanes of the vectors it may use (4, or 1 on a target without vectors; 8 or 16 when
    /// it calls assembled AVX2 / AVX-512 code).
    #[serde(skip)]
    pub lanes: usize,
    /// The tasks it is split into (`parallel_for` count); 1 for a serial kernel.
    pub tasks: usize,
}

fn module_err(e: impl std::fmt::Display) -> Error {
    Error::Cranelift { function: String::new(), message: e.to_string() }
}

/// Compiles `g` into an object whose symbols are prefixed by `name` (a C identifier); with
/// `profile`, a profiling build (see [`crate::Options::profile`]); with `par.tasks` > 1, the
/// heavy kernels split across tasks (see [`crate::Options::threads`]). Everything is defined
/// in one fixed order (deterministic bytes): the kernels in node order and the microkernels
/// they call, the weights, the profiling hook and peak loop, `<name>_workspace_size`, then
/// `<name>_run` (or `<name>_run_parallel` and `<name>_run`).
pub fn compile(g: &Graph, name: &str, isa: OwnedTargetIsa, caps: Caps, profile: bool, par: Parallel) -> Result<Object> {
    let plan = plan_memory(g)?;
    let builder = ObjectBuilder::new(isa, name, default_libcall_names()).map_err(module_err)?;
    let m = ObjectModule::new(builder);
    let mut o = Out { fb: FnBuilder { fctx: FunctionBuilderContext::new(), ctx: m.make_context() }, m, code_bytes: 0 };
    let ks = define_kernels(&mut o, g, &plan, name, caps, par)?;
    let weights = define_weights(&mut o.m, g, &plan, name, &ks.funcs, &ks.packed_reads)?;
    let hook = define_profiling(&mut o, name, caps, profile)?;
    define_workspace_size(&mut o, name, plan.arena_bytes)?;
    let run = Run { g, plan: &plan, kernels: &ks, weights: &weights, hook, ptr: o.m.target_config().pointer_type() };
    define_run(&mut o, &run, name, par.tasks > 1)?;
    let object = o.m.finish().emit().map_err(module_err)?;
    Ok(Object {
        object,
        weight_bytes: weights.bytes,
        packed_bytes: weights.packed_bytes,
        kernels: ks.funcs.iter().flatten().count(),
        code_bytes: o.code_bytes,
        kernel_list: ks.list,
        plan,
        schedule: caps.schedule,
        profile,
        threads: par.tasks,
    })
}

/// The module being built, its function builder and the machine code defined so far.
struct Out {
    m: ObjectModule,
    fb: FnBuilder,
    code_bytes: usize,
}

impl Out {
    /// [`FnBuilder::define`], counting the code.
    fn define(
        &mut self,
        symbol: &str,
        linkage: Linkage,
        sig: cranelift_codegen::ir::Signature,
        body: impl for<'b> FnOnce(FunctionBuilder<'b>, &mut ObjectModule) -> Result<FunctionBuilder<'b>>,
    ) -> Result<(FuncId, usize)> {
        let (f, bytes) = self.fb.define(&mut self.m, symbol, linkage, sig, body)?;
        self.code_bytes += bytes;
        Ok((f, bytes))
    }
}

/// The kernels of an object, one entry per node.
struct Kernels {
    /// The kernel's function; `None` for a node whose outputs are all views.
    funcs: Vec<Option<FuncId>>,
    /// A split candidate's task function and task count; a candidate that ended up unsplit
    /// (`(None, 1)`) still takes the task index (0).
    tasks: Vec<Option<(Option<FuncId>, usize)>>,
    /// The inputs each kernel reads packed.
    packed_reads: Vec<Vec<PackedRead>>,
    /// Every kernel, in call order.
    list: Vec<KernelInfo>,
}

/// Defines one local function per node that computes something (`<name>_k<i>`, and
/// `<name>_k<i>_task` for a split one), then the assembled microkernels they call.
fn define_kernels(o: &mut Out, g: &Graph, plan: &MemoryPlan, name: &str, caps: Caps, par: Parallel) -> Result<Kernels> {
    let ptr = o.m.target_config().pointer_type();
    let mut ks = Kernels { funcs: Vec::new(), tasks: Vec::new(), packed_reads: Vec::new(), list: Vec::new() };
    let mut ukrs = Microkernels::default();
    for (i, node) in g.nodes.iter().enumerate() {
        let mut reads = Vec::new();
        if node.outputs.iter().all(|o| plan.view_of.contains_key(o)) {
            ks.funcs.push(None);
            ks.tasks.push(None);
            ks.packed_reads.push(reads);
            continue;
        }
        let nargs = node.inputs.iter().flatten().count() + node.outputs.len() + 1;
        let flops = g.node_flops(node);
        let split = par.tasks > 1 && splittable(&node.op) && flops >= par.min_flops;
        let mut sig = o.m.make_signature();
        sig.params.extend(std::iter::repeat_n(AbiParam::new(ptr), nargs));
        if split {
            sig.params.push(AbiParam::new(types::I64));
        }
        let symbol = format!("{name}_k{i}");
        let mut used = false;
        let mut calls_asm = false;
        let (f, bytes) = o.define(&symbol, Linkage::Local, sig, |mut b, m| {
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let mut args: Vec<Value> = b.block_params(entry).to_vec();
            let index = if split { args.pop() } else { None };
            let mut kb = Kb::new(b, caps);
            kb.split = index.map(|index| crate::emit::Split { index, count: par.tasks });
            reads = crate::kernels::emit_node(&mut kb, g, node, &plan.layout, &args)?;
            used = split && kb.split.is_none();
            kb.b.ins().return_(&[]);
            for u in &kb.ukrs {
                let f = ukrs.declare(m, name, u.f)?;
                kb.b.func.params.reset_user_func_name(u.name, UserExternalName { namespace: 0, index: f.as_u32() });
            }
            calls_asm = !kb.ukrs.is_empty();
            Ok(kb.b)
        })?;
        ks.funcs.push(Some(f));
        let count = if used { par.tasks } else { 1 };
        ks.tasks.push(if used {
            let (t, bytes) = define_task(&mut o.m, &mut o.fb, &format!("{symbol}_task"), f, nargs)?;
            o.code_bytes += bytes;
            Some((Some(t), count))
        } else {
            split.then_some((None, 1))
        });
        ks.packed_reads.push(reads);
        ks.list.push(KernelInfo {
            symbol,
            node: node.name.clone(),
            op: node.op.kind_name().to_string(),
            code_bytes: bytes,
            flops,
            lanes: if calls_asm {
                caps.schedule.kernel.lanes()
            } else if caps.vector {
                4
            } else {
                1
            },
            tasks: count,
        });
    }
    o.code_bytes += ukrs.define(&mut o.m)?;
    Ok(ks)
}

/// In a profiling build, declares the imported hook `slmtvm_profile` (returned) and defines
/// `<name>_peak` ([`crate::Options::profile`]).
fn define_profiling(o: &mut Out, name: &str, caps: Caps, profile: bool) -> Result<Option<FuncId>> {
    if !profile {
        return Ok(None);
    }
    let mut sig = o.m.make_signature();
    sig.params.push(AbiParam::new(types::I32));
    let hook = o.m.declare_function("slmtvm_profile", Linkage::Import, &sig).map_err(module_err)?;
    o.code_bytes += match caps.schedule.kernel {
        Microkernel::Cranelift => define_peak(&mut o.m, &mut o.fb, name, caps)?,
        k => {
            let mut sig = o.m.make_signature();
            sig.params.push(AbiParam::new(types::I64));
            sig.params.push(AbiParam::new(o.m.target_config().pointer_type()));
            let f = o.m.declare_function(&format!("{name}_peak"), Linkage::Export, &sig).map_err(module_err)?;
            let bytes = crate::asm::x86::peak(k)
                .map_err(|e| Error::Assemble { what: "the peak loop".into(), message: e.to_string() })?;
            o.m.define_function_bytes(f, UKR_ALIGN, &bytes, &[]).map_err(module_err)?;
            bytes.len()
        }
    };
    Ok(Some(hook))
}

/// Defines `size_t <name>_workspace_size(void)`, returning `arena_bytes`.
fn define_workspace_size(o: &mut Out, name: &str, arena_bytes: usize) -> Result<()> {
    let ptr = o.m.target_config().pointer_type();
    let mut sig = o.m.make_signature();
    sig.returns.push(AbiParam::new(ptr));
    o.define(&format!("{name}_workspace_size"), Linkage::Export, sig, |mut b, _| {
        let e = b.create_block();
        b.switch_to_block(e);
        let v = b.ins().iconst(ptr, arena_bytes as i64);
        b.ins().return_(&[v]);
        Ok(b)
    })?;
    Ok(())
}

/// What the entry point calls and where every value lives.
struct Run<'a> {
    g: &'a Graph,
    plan: &'a MemoryPlan,
    kernels: &'a Kernels,
    weights: &'a Weights,
    /// The profiling hook, in a profiling build.
    hook: Option<FuncId>,
    ptr: types::Type,
}

/// The entry point's arguments.
#[derive(Clone, Copy)]
struct RunArgs {
    /// The symbol values (`int64_t*`), when the model has symbols.
    syms: Option<Value>,
    inputs: Value,
    outputs: Value,
    workspace: Value,
    /// `parallel_for` and its context, in a threaded build.
    pf: Option<(Value, Value)>,
}

/// Defines `<name>_run`: (symbols,) inputs, outputs, workspace. In a threaded build the body
/// is `<name>_run_parallel` (the same, then `parallel_for` and its context) and `<name>_run`
/// calls it with a NULL `parallel_for`.
fn define_run(o: &mut Out, r: &Run, name: &str, threaded: bool) -> Result<()> {
    let ptr = r.ptr;
    let nparams = if r.plan.layout.symbols.is_empty() { 3 } else { 4 };
    let mut sig = o.m.make_signature();
    sig.params.extend(std::iter::repeat_n(AbiParam::new(ptr), nparams + if threaded { 2 } else { 0 }));
    sig.returns.push(AbiParam::new(types::I32));
    let run_sig = sig.clone();
    let body = if threaded { format!("{name}_run_parallel") } else { format!("{name}_run") };
    let (run_fn, _) = o.define(&body, Linkage::Export, sig, |mut b, m| {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let (pf, p) = if threaded { (Some((p[nparams], p[nparams + 1])), &p[..nparams]) } else { (None, &p[..]) };
        let (syms, p) = if nparams == 3 { (None, p) } else { (Some(p[0]), &p[1..]) };
        let args = RunArgs { syms, inputs: p[0], outputs: p[1], workspace: p[2], pf };
        check_run_args(&mut b, r, args);
        call_kernels(&mut b, m, r, args)?;
        copy_outputs(&mut b, m, r, args)?;
        let ok = b.ins().iconst(types::I32, status::OK);
        b.ins().return_(&[ok]);
        Ok(b)
    })?;
    if threaded {
        // <name>_run(...) = <name>_run_parallel(..., NULL, NULL): the tasks serially.
        let mut sig = run_sig.clone();
        sig.params.truncate(nparams);
        o.define(&format!("{name}_run"), Linkage::Export, sig, |mut b, m| {
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let mut p = b.block_params(entry).to_vec();
            let null = b.ins().iconst(ptr, 0);
            p.extend([null, null]);
            let fref = m.declare_func_in_func(run_fn, b.func);
            let call = b.ins().call(fref, &p);
            let status = b.inst_results(call)[0];
            b.ins().return_(&[status]);
            Ok(b)
        })?;
    }
    Ok(())
}

/// Returns status `code` from the entry point when `cond` is set.
fn fail_if(b: &mut FunctionBuilder, cond: Value, code: i64) {
    let bad = b.create_block();
    let ok = b.create_block();
    b.ins().brif(cond, bad, &[], ok, &[]);
    b.switch_to_block(bad);
    let c = b.ins().iconst(types::I32, code);
    b.ins().return_(&[c]);
    b.switch_to_block(ok);
}

/// The entry point's checks: every symbol within its bound, no NULL array or buffer, an
/// aligned workspace (status codes in [`status`]).
fn check_run_args(b: &mut FunctionBuilder, r: &Run, a: RunArgs) {
    let (g, ptr, fl) = (r.g, r.ptr, crate::emit::flags());
    if let Some(sp) = a.syms {
        let z = b.ins().icmp_imm_s(IntCC::Equal, sp, 0);
        fail_if(b, z, status::ERR_SYMBOL);
        for (k, (_, bound)) in r.plan.layout.symbols.list.iter().enumerate() {
            let v = b.ins().load(types::I64, fl, sp, (8 * k) as i32);
            // Unsigned comparison: a negative value is above every bound.
            let bad = b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, v, *bound as i64);
            fail_if(b, bad, status::ERR_SYMBOL);
        }
    }
    for (arr, n) in [(a.inputs, g.inputs.len()), (a.outputs, g.outputs.len())] {
        let z = b.ins().icmp_imm_s(IntCC::Equal, arr, 0);
        fail_if(b, z, status::ERR_NULL);
        for k in 0..n {
            let e = b.ins().load(ptr, fl, arr, (k * ptr.bytes() as usize) as i32);
            let z = b.ins().icmp_imm_s(IntCC::Equal, e, 0);
            fail_if(b, z, status::ERR_NULL);
        }
    }
    if r.plan.arena_bytes > 0 {
        let z = b.ins().icmp_imm_s(IntCC::Equal, a.workspace, 0);
        fail_if(b, z, status::ERR_NULL);
        let low = b.ins().band_imm_s(a.workspace, (crate::plan::ARENA_ALIGN - 1) as i64);
        fail_if(b, low, status::ERR_WORKSPACE_ALIGN);
    }
}

/// The address of value `v`'s bytes in the entry point: a caller's buffer, a weight or an
/// arena offset.
fn value_addr(b: &mut FunctionBuilder, m: &mut ObjectModule, r: &Run, a: RunArgs, v: ValueId) -> Result<Value> {
    let (g, ptr, fl) = (r.g, r.ptr, crate::emit::flags());
    let s = r.plan.storage.get(&v).ok_or_else(|| Error::Internal(format!("no storage for '{}'", g.value(v).name)))?;
    Ok(match *s {
        Storage::Input(k) => b.ins().load(ptr, fl, a.inputs, (k * ptr.bytes() as usize) as i32),
        Storage::Output(k) => b.ins().load(ptr, fl, a.outputs, (k * ptr.bytes() as usize) as i32),
        Storage::Const(c) => {
            let d = r
                .weights
                .plain
                .get(&c)
                .ok_or_else(|| Error::Internal(format!("constant '{}' has no in-place copy", g.value(c).name)))?;
            let gv = m.declare_data_in_func(*d, b.func);
            b.ins().symbol_value(ptr, gv)
        }
        Storage::Arena { offset, .. } => b.ins().iadd_imm_s(a.workspace, offset as i64),
    })
}

/// Calls every kernel in node order with its operands' addresses (a packed copy for an input
/// read packed), the symbols or workspace last; a split kernel through `parallel_for`; the
/// profiling hook before each and after the last.
fn call_kernels(b: &mut FunctionBuilder, m: &mut ObjectModule, r: &Run, a: RunArgs) -> Result<()> {
    let (g, ptr, ks) = (r.g, r.ptr, r.kernels);
    let max_args = ks
        .tasks
        .iter()
        .zip(&g.nodes)
        .filter(|(t, _)| matches!(t, Some((Some(_), _))))
        .map(|(_, n)| n.inputs.iter().flatten().count() + n.outputs.len() + 1)
        .max()
        .unwrap_or(0);
    // The argument block of a split kernel's tasks (one at a time, so one block serves all).
    let block = (max_args > 0).then(|| {
        b.create_sized_stack_slot(cranelift_codegen::ir::StackSlotData::new(
            cranelift_codegen::ir::StackSlotKind::ExplicitSlot,
            (max_args * ptr.bytes() as usize) as u32,
            3,
        ))
    });
    let mark = |b: &mut FunctionBuilder, m: &mut ObjectModule, k: i64| {
        if let Some(h) = r.hook {
            let fref = m.declare_func_in_func(h, b.func);
            let kv = b.ins().iconst(types::I32, k);
            b.ins().call(fref, &[kv]);
        }
    };
    let mut index = 0;
    for (((node, k), t), reads) in g.nodes.iter().zip(&ks.funcs).zip(&ks.tasks).zip(&ks.packed_reads) {
        let Some(f) = k else { continue };
        mark(b, m, index);
        index += 1;
        let mut args = Vec::new();
        for (i, v) in node.inputs.iter().enumerate() {
            let Some(v) = *v else { continue };
            match reads.iter().find(|rd| rd.input == i) {
                Some(rd) => {
                    let gv = m.declare_data_in_func(r.weights.packed[&(const_of(r.plan, v), rd.packing)], b.func);
                    args.push(b.ins().symbol_value(ptr, gv));
                }
                None => args.push(value_addr(b, m, r, a, v)?),
            }
        }
        for &v in &node.outputs {
            args.push(value_addr(b, m, r, a, v)?);
        }
        args.push(a.syms.unwrap_or(a.workspace));
        let fref = m.declare_func_in_func(*f, b.func);
        match (t, a.pf, block) {
            (Some((Some(task), n)), Some((pf, ctx)), Some(slot)) => {
                call_split(b, m, ptr, (fref, *task), &args, *n, (pf, ctx), slot);
            }
            (Some(_), _, _) => {
                args.push(b.ins().iconst(types::I64, 0));
                b.ins().call(fref, &args);
            }
            _ => {
                b.ins().call(fref, &args);
            }
        }
    }
    mark(b, m, -1);
    Ok(())
}

/// Copies the graph outputs not computed in place (inputs, constants, views, repeats).
fn copy_outputs(b: &mut FunctionBuilder, m: &mut ObjectModule, r: &Run, a: RunArgs) -> Result<()> {
    let (g, ptr, fl) = (r.g, r.ptr, crate::emit::flags());
    for (k, &o) in g.outputs.iter().enumerate() {
        if r.plan.storage.get(&o) == Some(&Storage::Output(k)) {
            continue;
        }
        let bytes = r.plan.layout.bytes(g, o).unwrap_or(0);
        let src = value_addr(b, m, r, a, o)?;
        let dst = b.ins().load(ptr, fl, a.outputs, (k * ptr.bytes() as usize) as i32);
        let n = b.ins().iconst(ptr, bytes as i64);
        b.call_memcpy(m.target_config(), dst, src, n);
    }
    Ok(())
}

/// The weights of an object: the data object of each constant read in place, and of each
/// (constant, layout) read packed.
struct Weights {
    plain: BTreeMap<ValueId, DataId>,
    packed: BTreeMap<(ValueId, Packing), DataId>,
    /// Bytes of all of them.
    bytes: usize,
    /// Bytes of the packed copies (padding included).
    packed_bytes: usize,
}

/// The constant whose bytes `v` (a constant, or a view of one) is.
fn const_of(plan: &MemoryPlan, v: ValueId) -> ValueId {
    match plan.storage.get(&v) {
        Some(Storage::Const(c)) => *c,
        _ => v,
    }
}

/// Defines the weights, in constant order (deterministic): `NAME_wK` (the K-th constant) in
/// place unless every read of it is packed, then one copy per layout its packed reads use
/// ([`crate::pack::Packing`]: `NAME_wK_pNR` for each panel width, `NAME_wK_q`/`_qs`/`_qz` for
/// MatMulNBits). Every packed read is checked to be of a whole constant that layout takes (an
/// internal error otherwise, never wrong bytes).
fn define_weights(
    m: &mut ObjectModule,
    g: &Graph,
    plan: &MemoryPlan,
    name: &str,
    kernels: &[Option<FuncId>],
    packed_reads: &[Vec<PackedRead>],
) -> Result<Weights> {
    // Packed reads: (constant, layout); constants read in place by a kernel or copied to a
    // graph output.
    let mut packs: std::collections::BTreeSet<(ValueId, Packing)> = Default::default();
    let mut in_place: std::collections::BTreeSet<ValueId> = Default::default();
    for ((node, k), reads) in g.nodes.iter().zip(kernels).zip(packed_reads) {
        if k.is_none() {
            continue;
        }
        for (i, v) in node.inputs.iter().enumerate() {
            let Some(v) = *v else { continue };
            let Some(r) = reads.iter().find(|r| r.input == i) else {
                if let Some(Storage::Const(c)) = plan.storage.get(&v) {
                    in_place.insert(*c);
                }
                continue;
            };
            if !g.consts.contains_key(&v) {
                return Err(Error::Internal(format!(
                    "node '{}': input {i} read packed ({:?}) is not a whole constant",
                    node.name, r.packing
                )));
            }
            packs.insert((v, r.packing));
        }
    }
    // Graph outputs that are constants (or views of them) are copied from the in-place bytes.
    for o in &g.outputs {
        if let Some(Storage::Const(c)) = plan.storage.get(o) {
            in_place.insert(*c);
        }
    }
    let mut w = Weights { plain: BTreeMap::new(), packed: BTreeMap::new(), bytes: 0, packed_bytes: 0 };
    let mut define = |m: &mut ObjectModule, symbol: &str, mut bytes: Vec<u8>| -> Result<DataId> {
        let d = m.declare_data(symbol, Linkage::Local, false, false).map_err(module_err)?;
        let mut desc = DataDescription::new();
        if bytes.is_empty() {
            bytes.push(0);
        }
        w.bytes += bytes.len();
        desc.define(bytes.into_boxed_slice());
        desc.set_align(crate::plan::ARENA_ALIGN as u64);
        m.define_data(d, &desc).map_err(module_err)?;
        Ok(d)
    };
    let mut plain = BTreeMap::new();
    let mut packed = BTreeMap::new();
    let mut packed_bytes = 0;
    for (k, (&id, t)) in g.consts.iter().enumerate() {
        let layouts: Vec<Packing> =
            packs.range((id, Packing::MIN)..).take_while(|(v, _)| *v == id).map(|&(_, p)| p).collect();
        if layouts.is_empty() || in_place.contains(&id) {
            plain.insert(id, define(m, &format!("{name}_w{k}"), t.to_le_bytes())?);
        }
        for p in layouts {
            let bytes = p.pack(t).map_err(|e| {
                Error::Internal(format!("constant '{}' cannot be packed as {p:?}: {e}", g.value(id).name))
            })?;
            packed_bytes += bytes.len();
            packed.insert((id, p), define(m, &format!("{name}_w{k}_{}", p.suffix()), bytes)?);
        }
    }
    w.plain = plain;
    w.packed = packed;
    w.packed_bytes = packed_bytes;
    Ok(w)
}

/// Calls split kernel `kernel` (whose task function is `task`) with `args` as `n` tasks: the
/// arguments stored in the block `slot`, then `pf(ctx, n, task, slot)`, or with a NULL `pf`
/// `kernel(args..., i)` for `i` in `0..n`.
#[allow(clippy::too_many_arguments)]
fn call_split(
    b: &mut FunctionBuilder,
    m: &mut ObjectModule,
    ptr: types::Type,
    (kernel, task): (cranelift_codegen::ir::FuncRef, FuncId),
    args: &[Value],
    n: usize,
    (pf, ctx): (Value, Value),
    slot: cranelift_codegen::ir::StackSlot,
) {
    let fl = crate::emit::flags();
    let (serial, parallel, done) = (b.create_block(), b.create_block(), b.create_block());
    let null = b.ins().icmp_imm_s(IntCC::Equal, pf, 0);
    b.ins().brif(null, serial, &[], parallel, &[]);

    b.switch_to_block(serial);
    let (head, body) = (b.create_block(), b.create_block());
    b.append_block_param(head, types::I64);
    let zero = b.ins().iconst(types::I64, 0);
    b.ins().jump(head, &[zero.into()]);
    b.switch_to_block(head);
    let i = b.block_params(head)[0];
    let more = b.ins().icmp_imm_s(IntCC::SignedLessThan, i, n as i64);
    b.ins().brif(more, body, &[], done, &[]);
    b.switch_to_block(body);
    let mut a = args.to_vec();
    a.push(i);
    b.ins().call(kernel, &a);
    let next = b.ins().iadd_imm_s(i, 1);
    b.ins().jump(head, &[next.into()]);

    b.switch_to_block(parallel);
    let arg = b.ins().stack_addr(ptr, slot, 0);
    for (k, &v) in args.iter().enumerate() {
        b.ins().store(fl, v, arg, (k * ptr.bytes() as usize) as i32);
    }
    let tref = m.declare_func_in_func(task, b.func);
    let taddr = b.ins().func_addr(ptr, tref);
    let count = b.ins().iconst(types::I64, n as i64);
    let mut sig = m.make_signature();
    sig.params.extend([AbiParam::new(ptr), AbiParam::new(types::I64), AbiParam::new(ptr), AbiParam::new(ptr)]);
    let sref = b.import_signature(sig);
    b.ins().call_indirect(sref, pf, &[ctx, count, taddr, arg]);
    b.ins().jump(done, &[]);
    b.switch_to_block(done);
}

/// Defines the task function `symbol(void *arg, int64_t index)` of split kernel `kernel`
/// (which takes `nargs` pointers then the index): it loads the pointers from the argument
/// block `arg` and calls the kernel. Returns it and its code size.
fn define_task(
    m: &mut ObjectModule,
    fb: &mut FnBuilder,
    symbol: &str,
    kernel: FuncId,
    nargs: usize,
) -> Result<(FuncId, usize)> {
    let ptr = m.target_config().pointer_type();
    let mut sig = m.make_signature();
    sig.params.extend([AbiParam::new(ptr), AbiParam::new(types::I64)]);
    fb.define(m, symbol, Linkage::Local, sig, |mut b, m| {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let fl = crate::emit::flags();
        let mut args: Vec<Value> =
            (0..nargs).map(|k| b.ins().load(ptr, fl, p[0], (k * ptr.bytes() as usize) as i32)).collect();
        args.push(p[1]);
        let fref = m.declare_func_in_func(kernel, b.func);
        b.ins().call(fref, &args);
        b.ins().return_(&[]);
        Ok(b)
    })
}

/// Defines `<name>_peak(iters, out)`: `iters` iterations of [`PEAK_FMAS`] independent
/// multiply-adds (`F32X4` where the target has vectors, else `F32`), their sum stored at
/// `out`. Returns its code size.
fn define_peak(m: &mut ObjectModule, fb: &mut FnBuilder, name: &str, caps: Caps) -> Result<usize> {
    let ptr = m.target_config().pointer_type();
    let mut sig = m.make_signature();
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(ptr));
    let (_, bytes) = fb.define(m, &format!("{name}_peak"), Linkage::Export, sig, |mut b, _| {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let (iters, out) = (p[0], p[1]);
        let mut kb = Kb::new(b, caps);
        let lanes = if caps.vector { 4 } else { 1 };
        let accs: Vec<cranelift_frontend::Variable> = (0..PEAK_FMAS)
            .map(|k| {
                let z = kb.fconst(1.0 + k as f32 * 1e-3, lanes);
                kb.var(z)
            })
            .collect();
        let (x, y) = (kb.fconst(0.999_999, lanes), kb.fconst(1e-7, lanes));
        let zero = kb.iconst(0);
        kb.for_range(zero, iters, 1, |kb, _| {
            for &a in &accs {
                let old = kb.b.use_var(a);
                let new = kb.mul_add(old, x, y);
                kb.b.def_var(a, new);
            }
        });
        let mut total = kb.b.use_var(accs[0]);
        for &a in &accs[1..] {
            let v = kb.b.use_var(a);
            total = kb.b.ins().fadd(total, v);
        }
        if caps.vector {
            total = kb.hsum(total);
        }
        kb.store(total, out, 0);
        kb.b.ins().return_(&[]);
        Ok(kb.b)
    })?;
    Ok(bytes)
}

/// Code alignment of the assembled functions (a cache line: their loops start aligned).
const UKR_ALIGN: u64 = 64;

/// The assembled functions of an object: declared (local functions) as kernels first call
/// them, defined once after the last kernel, in [`crate::asm::AsmFn`] order.
#[derive(Default)]
struct Microkernels {
    ids: BTreeMap<crate::asm::AsmFn, FuncId>,
}

impl Microkernels {
    /// The function of `u`, declared on first use.
    fn declare(&mut self, m: &mut ObjectModule, prefix: &str, u: crate::asm::AsmFn) -> Result<FuncId> {
        if let Some(&f) = self.ids.get(&u) {
            return Ok(f);
        }
        let mut sig = m.make_signature();
        sig.params.extend([AbiParam::new(types::I64); 6]);
        let f = m.declare_function(&u.symbol(prefix), Linkage::Local, &sig).map_err(module_err)?;
        self.ids.insert(u, f);
        Ok(f)
    }

    /// Assembles and defines every declared microkernel; returns their code bytes.
    fn define(&self, m: &mut ObjectModule) -> Result<usize> {
        let mut total = 0;
        for (u, &f) in &self.ids {
            let bytes = u.assemble()?;
            m.define_function_bytes(f, UKR_ALIGN, &bytes, &[]).map_err(module_err)?;
            total += bytes.len();
        }
        Ok(total)
    }
}

/// The reusable state for building functions one after another.
struct FnBuilder {
    fctx: FunctionBuilderContext,
    ctx: cranelift_codegen::Context,
}

impl FnBuilder {
    /// Declares `symbol` with `linkage` and `sig`, lets `body` emit it (from an empty function;
    /// it returns the builder after its last instruction), then seals, finalizes, compiles and
    /// defines it. Returns the function and its machine-code size.
    fn define(
        &mut self,
        m: &mut ObjectModule,
        symbol: &str,
        linkage: Linkage,
        sig: cranelift_codegen::ir::Signature,
        body: impl for<'b> FnOnce(FunctionBuilder<'b>, &mut ObjectModule) -> Result<FunctionBuilder<'b>>,
    ) -> Result<(FuncId, usize)> {
        let f = m.declare_function(symbol, linkage, &sig).map_err(module_err)?;
        self.ctx.func.signature = sig;
        self.ctx.func.name = UserFuncName::user(0, f.as_u32());
        let config = m.target_config();
        let b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let mut b = body(b, m)?;
        b.seal_all_blocks();
        b.finalize(config);
        m.define_function(f, &mut self.ctx)
            .map_err(|e| Error::Cranelift { function: format!("{symbol}: "), message: format!("{e:?}") })?;
        let bytes = code_size(&self.ctx);
        m.clear_context(&mut self.ctx);
        Ok((f, bytes))
    }
}

fn code_size(ctx: &cranelift_codegen::Context) -> usize {
    ctx.compiled_code().map_or(0, |c| c.code_info().total_size as usize)
}
