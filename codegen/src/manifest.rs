//! `<name>.json`: what a build made, for tools and people — the target, the symbols and their
//! bounds, every input and output (dtype, physical shape, logical dims, bytes), the workspace,
//! the weights and code sizes, and every kernel with its operations.
//!
//! Codegen fills everything it knows ([`Manifest::of`]); the build's provenance that lies
//! outside codegen (the model file's hash, what the optimizer and `--quantize` did) is set by
//! the caller in the `Option` fields, which are left out of the JSON while unset.

use crate::object::{KernelInfo, Object};
use crate::plan::ARENA_ALIGN;
use serde::{Deserialize, Serialize};
use slmtvm_ir::{Graph, ValueId};
use std::collections::BTreeMap;

/// One input or output of the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// Its name in the model.
    pub name: String,
    /// Element type (`f32`, `i64`, ...).
    pub dtype: String,
    /// Physical shape: symbolic dims at their bounds.
    pub shape: Vec<usize>,
    /// Logical dims: sizes or symbol polynomials (`past+1`).
    pub dims: Vec<String>,
    /// Bytes of the buffer (at the physical shape).
    pub bytes: usize,
}

/// What the optimizer did (set by the caller that ran it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptimizerInfo {
    /// The level run (0: none).
    pub level: u8,
    /// Why saturation stopped.
    pub stop: String,
    /// Rewrites applied, by rule name.
    pub applied: BTreeMap<String, usize>,
    /// Nodes before and after.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
}

/// A symbolic dim of the inputs and its bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolInfo {
    /// The symbol.
    pub name: String,
    /// Its largest value (buffers are sized for it).
    pub bound: usize,
}

/// `<name>.json`. The field order is the JSON's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model's C name.
    pub name: String,
    /// `slmtvm VERSION`.
    pub compiler: String,
    /// What the optimizer did (set by the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerInfo>,
    /// SHA-256 of the model file, lower-case hex (set by the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    /// The target's name.
    pub target: String,
    /// The target's settings, as [`slmtvm_targets::Target::fingerprint`] gives them.
    pub target_fingerprint: String,
    /// The symbols of the inputs' dims, sorted by name (the run-time array's order).
    pub symbols: Vec<SymbolInfo>,
    /// (input, output) names of caches updated in place (one buffer may serve as both).
    pub in_place: Vec<(String, String)>,
    /// The inputs, in `<name>_run`'s order.
    pub inputs: Vec<TensorInfo>,
    /// The outputs, in `<name>_run`'s order.
    pub outputs: Vec<TensorInfo>,
    /// What `--quantize` did (absent: the model's own arithmetic; set by the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Bytes of the caller's workspace.
    pub arena_bytes: usize,
    /// Its alignment.
    pub arena_align: usize,
    /// The least workspace any plan could use (the largest set of buffers live at once).
    pub arena_lower_bound: usize,
    /// Bytes of weights in `.rodata`, packed copies included.
    pub weights_bytes: usize,
    /// Bytes of the weights packed into the matrix microkernels' panels (padding included),
    /// part of `weights_bytes`.
    pub packed_weights_bytes: usize,
    /// Bytes of machine code.
    pub code_bytes: usize,
    /// Kernels emitted.
    pub kernels: usize,
    /// A profiling build: the object imports `slmtvm_profile` and exports `NAME_peak`.
    pub profile: bool,
    /// The matrix products' schedule.
    pub schedule: String,
    /// Tasks per split kernel (`--threads`); above 1 the object exports `NAME_run_parallel`.
    pub threads: usize,
    /// Nodes per operator.
    pub op_counts: BTreeMap<String, usize>,
    /// Every kernel, in call order.
    pub kernel_list: Vec<KernelInfo>,
}

impl Manifest {
    /// The manifest of `g` compiled as `name` for `target` into `o`; the caller's provenance
    /// fields unset.
    pub(crate) fn of(g: &Graph, name: &str, target: &slmtvm_targets::Target, o: &Object) -> Manifest {
        let (plan, lay) = (&o.plan, &o.plan.layout);
        let info = |ids: &[ValueId]| -> Vec<TensorInfo> {
            ids.iter()
                .map(|&v| TensorInfo {
                    name: g.value(v).name.clone(),
                    dtype: g.ty(v).dtype.to_string(),
                    shape: lay.dims(v).to_vec(),
                    dims: g.ty(v).shape.0.iter().map(|d| d.poly().to_string()).collect(),
                    // The plan has checked every buffer's size.
                    bytes: lay.bytes(g, v).unwrap_or(usize::MAX),
                })
                .collect()
        };
        let mut op_counts = BTreeMap::new();
        for n in &g.nodes {
            *op_counts.entry(n.op.kind_name().to_string()).or_default() += 1;
        }
        Manifest {
            name: name.to_string(),
            compiler: format!("slmtvm {}", env!("CARGO_PKG_VERSION")),
            optimizer: None,
            model_sha256: None,
            target: target.name().to_string(),
            target_fingerprint: target.fingerprint(),
            symbols: lay.symbols.list.iter().map(|(n, b)| SymbolInfo { name: n.clone(), bound: *b }).collect(),
            in_place: lay
                .in_place
                .iter()
                .map(|&(k, j)| (g.value(g.inputs[k]).name.clone(), g.value(g.outputs[j]).name.clone()))
                .collect(),
            inputs: info(&g.inputs),
            outputs: info(&g.outputs),
            quantization: None,
            arena_bytes: plan.arena_bytes,
            arena_align: ARENA_ALIGN,
            arena_lower_bound: plan.lower_bound,
            weights_bytes: o.weight_bytes,
            packed_weights_bytes: o.packed_bytes,
            code_bytes: o.code_bytes,
            kernels: o.kernels,
            profile: o.profile,
            schedule: o.schedule.to_string(),
            threads: o.threads,
            op_counts,
            kernel_list: o.kernel_list.clone(),
        }
    }

    /// The JSON text of `<name>.json` (pretty, with a final newline).
    pub fn to_json(&self) -> String {
        // Every field is a string, number, bool, list or string-keyed map: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// One line saying what was built: target, workspace, weights, code, kernels and their split.
    pub fn summary(&self) -> String {
        let split = self.kernel_list.iter().filter(|k| k.tasks > 1).count();
        format!(
            "{}: {} (arena {} bytes, lower bound {}; weights {} bytes, {} of them packed; code {} bytes in {} kernels{})",
            self.name,
            self.target,
            self.arena_bytes,
            self.arena_lower_bound,
            self.weights_bytes,
            self.packed_weights_bytes,
            self.code_bytes,
            self.kernels,
            if self.threads > 1 { format!(", {split} split into {} tasks", self.threads) } else { String::new() }
        )
    }
}
