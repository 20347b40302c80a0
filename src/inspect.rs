//! `slmtvm inspect`: what a model contains and whether slmtvm supports it.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use slmtvm_frontend::LoadOptions;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Serialize)]
struct Io {
    name: String,
    dtype: String,
    shape: String,
}

#[derive(Serialize)]
struct Unsupported {
    node: String,
    op: String,
    domain: String,
}

#[derive(Serialize)]
struct Report {
    model: String,
    producer: String,
    opset: i64,
    onnx_ops: BTreeMap<String, usize>,
    unsupported: Vec<Unsupported>,
    inputs: Vec<Io>,
    outputs: Vec<Io>,
    ir_ops: BTreeMap<String, usize>,
    parameters: u64,
    parameter_bytes: u64,
    flops: u64,
    /// Memory of the compiled model at the symbols' bounds (needs every symbol bounded).
    memory: Option<Memory>,
    /// Why `memory` is absent, when it is.
    memory_note: Option<String>,
}

#[derive(Serialize)]
struct Memory {
    symbols: BTreeMap<String, usize>,
    arena_bytes: usize,
    arena_lower_bound: usize,
    /// Caches updated in place (past input, present output), when the model has them.
    kv_cache: Option<KvCache>,
}

#[derive(Serialize)]
struct KvCache {
    pairs: Vec<(String, String)>,
    /// Bytes every cached token takes, over all pairs.
    bytes_per_token: usize,
    /// Tokens the cache holds at the bounds.
    max_tokens: usize,
    /// Bytes of all caches at the bounds.
    bytes_at_bound: usize,
}

/// The compiled model's memory at the bounds: arena, and the KV cache of a decoder.
fn memory(g: &slmtvm_ir::Graph) -> std::result::Result<Memory, String> {
    let plan = slmtvm_codegen::plan_memory(g).map_err(|e| e.to_string())?;
    let lay = &plan.layout;
    let mut kv = KvCache { pairs: vec![], bytes_per_token: 0, max_tokens: usize::MAX, bytes_at_bound: 0 };
    for &(k, j) in &lay.in_place {
        let (p, o) = (g.inputs[k], g.outputs[j]);
        let (ps, os) = (&g.ty(p).shape.0, &g.ty(o).shape.0);
        let Some(axis) = (0..os.len()).find(|&a| ps[a].poly() != os[a].poly()) else { continue };
        let bytes = lay.bytes(g, o).unwrap_or(0);
        let tokens = lay.dims(o)[axis].max(1);
        kv.pairs.push((g.value(p).name.clone(), g.value(o).name.clone()));
        kv.bytes_per_token += bytes / tokens;
        kv.bytes_at_bound += bytes;
        kv.max_tokens = kv.max_tokens.min(tokens);
    }
    Ok(Memory {
        symbols: lay.symbols.list.iter().cloned().collect(),
        arena_bytes: plan.arena_bytes,
        arena_lower_bound: plan.lower_bound,
        kv_cache: (!kv.pairs.is_empty()).then_some(kv),
    })
}

fn human(n: u64) -> String {
    let (v, unit) = match n {
        n if n >= 1_000_000_000 => (n as f64 / 1e9, "G"),
        n if n >= 1_000_000 => (n as f64 / 1e6, "M"),
        n if n >= 1_000 => (n as f64 / 1e3, "k"),
        n => return n.to_string(),
    };
    format!("{v:.2} {unit}")
}

/// Prints the report; fails (exit 2) when the model uses unsupported operators, after listing
/// every one of them.
pub fn inspect(path: &Path, opts: &LoadOptions, json: bool, print_ir: bool) -> Result<()> {
    // The file is read once, for the scan and (when every operator is supported) the import.
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let scan = slmtvm_frontend::scan_onnx_bytes(&bytes)?;
    let unsupported: Vec<Unsupported> = scan
        .unsupported
        .iter()
        .map(|(node, op, domain)| Unsupported { node: node.clone(), op: op.clone(), domain: domain.clone() })
        .collect();
    let mut report = Report {
        model: path.display().to_string(),
        producer: scan.producer.clone(),
        opset: scan.opset,
        onnx_ops: scan.ops.clone(),
        unsupported,
        inputs: vec![],
        outputs: vec![],
        ir_ops: BTreeMap::new(),
        parameters: 0,
        parameter_bytes: 0,
        flops: 0,
        memory: None,
        memory_note: None,
    };
    let graph =
        if report.unsupported.is_empty() { Some(slmtvm_frontend::load_onnx_read(path, &bytes, opts)?) } else { None };
    if let Some(g) = &graph {
        let io = |ids: &[slmtvm_ir::ValueId]| {
            ids.iter()
                .map(|&i| Io {
                    name: g.value(i).name.clone(),
                    dtype: g.ty(i).dtype.to_string(),
                    shape: g.ty(i).shape.to_string(),
                })
                .collect::<Vec<_>>()
        };
        report.inputs = io(&g.inputs);
        report.outputs = io(&g.outputs);
        for n in &g.nodes {
            *report.ir_ops.entry(n.op.kind_name().to_string()).or_default() += 1;
        }
        (report.parameters, report.parameter_bytes) = g.param_stats();
        report.flops = g.flops();
        match memory(g) {
            Ok(m) => report.memory = Some(m),
            Err(e) => report.memory_note = Some(e),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
        if let (true, Some(g)) = (print_ir, &graph) {
            println!("\n{}", slmtvm_ir::text::print(g));
        }
    }
    if !report.unsupported.is_empty() {
        let list: Vec<String> = report
            .unsupported
            .iter()
            .map(|u| match u.domain.as_str() {
                "" | "ai.onnx" => format!("node '{}' ({})", u.node, u.op),
                d => format!("node '{}' ({}, domain {d})", u.node, u.op),
            })
            .collect();
        bail!("{} unsupported operator(s): {}", list.len(), list.join(", "));
    }
    Ok(())
}

fn print_text(r: &Report) {
    println!("model:      {}", r.model);
    if !r.producer.is_empty() {
        println!("producer:   {}", r.producer);
    }
    println!("opset:      {}", r.opset);
    let w = r.inputs.iter().chain(&r.outputs).map(|i| i.name.len()).max().unwrap_or(0);
    println!("inputs:");
    for i in &r.inputs {
        println!("  {:w$}  {}{}", i.name, i.dtype, i.shape);
    }
    println!("outputs:");
    for o in &r.outputs {
        println!("  {:w$}  {}{}", o.name, o.dtype, o.shape);
    }
    println!("parameters: {} ({} bytes)", human(r.parameters), r.parameter_bytes);
    println!("FLOPs:      {} per run (symbolic dims at their bounds)", human(r.flops));
    match (&r.memory, &r.memory_note) {
        (Some(m), _) => {
            let syms: Vec<String> = m.symbols.iter().map(|(n, b)| format!("{n}<={b}")).collect();
            let at = if syms.is_empty() { String::new() } else { format!(" at {}", syms.join(", ")) };
            println!("arena:      {} bytes{at} (lower bound {})", m.arena_bytes, m.arena_lower_bound);
            if let Some(kv) = &m.kv_cache {
                println!(
                    "KV cache:   {} bytes per token, {} tokens at the bounds = {} bytes ({} caches updated in place)",
                    kv.bytes_per_token,
                    kv.max_tokens,
                    kv.bytes_at_bound,
                    kv.pairs.len()
                );
            }
        }
        (None, Some(note)) => println!("arena:      not planned: {note}"),
        (None, None) => {}
    }
    println!("ONNX operators ({} nodes):", r.onnx_ops.values().sum::<usize>());
    for (op, n) in &r.onnx_ops {
        println!("  {op:24} {n}");
    }
    println!("IR operators after import-time folding ({} nodes):", r.ir_ops.values().sum::<usize>());
    for (op, n) in &r.ir_ops {
        println!("  {op:24} {n}");
    }
    if r.unsupported.is_empty() {
        println!("unsupported operators: none");
    } else {
        println!("unsupported operators:");
        for u in &r.unsupported {
            let d = if u.domain.is_empty() { String::new() } else { format!(" (domain {})", u.domain) };
            println!("  node '{}': {}{d}", u.node, u.op);
        }
    }
}
