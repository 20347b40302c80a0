//! `slmtvm inspect`: what a model contains and whether slmtvm supports it.

use anyhow::{Result, bail};
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
    let scan = slmtvm_frontend::scan_onnx(path)?;
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
    };
    let graph = if report.unsupported.is_empty() { Some(slmtvm_frontend::load_onnx(path, opts)?) } else { None };
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
        let list: Vec<String> = report.unsupported.iter().map(|u| format!("node '{}' ({})", u.node, u.op)).collect();
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
