//! The target-aware cost model that extraction minimizes.
//!
//! A node costs an estimate of cycles: its floating-point (or integer) operations divided by
//! the lanes the target computes at once (4 with 128-bit vectors for f32/i32 elementwise,
//! reduction and matrix work; 1 without vectors), halved again for matrix products (MatMul,
//! Gemm, Dense, FusedMlp and Attention) when the target has fused multiply-add, times the
//! schedule's factor for a Gemm ([`DOT_SCHEDULE_FACTOR`]), four times for divisions, plus the
//! bytes it reads and writes at 16 bytes per cycle. Views (Reshape, Flatten, Squeeze,
//! Unsqueeze, Identity) move nothing and cost only [`VIEW_COST`], a tie-break towards fewer
//! views; inputs, constants and the outputs root cost nothing. A derived symbolic dim without
//! a bound of its own is bounded through the inputs' symbol bounds; a tensor whose size has no
//! bound at all counts as [`UNBOUNDED_BYTES`]. A fused operator's
//! intermediates never exist, so they cost nothing: only its operands and result are counted.
//! A class whose operator does not type-check costs infinity, so extraction never picks it.

use crate::analysis::EG;
use crate::lang::Node;
use slmtvm_ir::Op;

/// The cost of a view: nothing moves, but fewer views make a simpler graph.
pub const VIEW_COST: f64 = 1e-3;

/// The bytes assumed for a tensor whose size has no upper bound.
pub const UNBOUNDED_BYTES: f64 = (1u64 << 20) as f64;

/// What the cost model knows of the target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// f32 lanes per vector operation (1 = scalar code only).
    pub lanes: f64,
    /// Fused multiply-add is native (halves the cost of matrix products' multiply-adds).
    pub fma: bool,
    /// Bytes moved per cycle.
    pub bytes_per_cycle: f64,
    /// Cycles per FLOP of the fused Attention kernel when it is slower than the matrix
    /// products (`None`, the default: costed like a matrix product, which it now is — its
    /// products run the matmul schedules over query blocks; on MiniLM it runs 220 M
    /// instructions where the unfused MatMul/Mul/Add/Softmax chain ran 225 M, callgrind,
    /// x86_64-v3). A target whose attention kernel lags can price it higher so extraction
    /// keeps the unfused form; `--explain` reports every attention the rules found either way.
    pub attention_cycles_per_flop: Option<f64>,
}

impl Default for CostModel {
    fn default() -> CostModel {
        CostModel { lanes: 4.0, fma: true, bytes_per_cycle: 16.0, attention_cycles_per_flop: None }
    }
}

impl CostModel {
    /// The cost model of `target`: its codegen's f32 lanes
    /// ([`slmtvm_targets::VectorCaps::lanes_f32`]; 1 without vectors) and whether its vectors
    /// have a fused multiply-add; the other figures the defaults'.
    pub fn for_target(target: &slmtvm_targets::Target) -> CostModel {
        let v = target.vector();
        CostModel {
            lanes: v.map_or(1.0, |v| f64::from(v.lanes_f32)),
            fma: v.is_some_and(|v| v.fma),
            ..CostModel::default()
        }
    }

    /// The cost of one e-node (not counting its operands).
    pub fn node_cost(&self, egraph: &EG, node: &Node) -> f64 {
        let Node::Op(key, ch) = node else { return 0.0 };
        if matches!(
            *key.op,
            Op::Reshape(_)
                | Op::Flatten(_)
                | Op::Squeeze(_)
                | Op::Unsqueeze(_)
                | Op::Unary(slmtvm_ir::ops::UnaryOp::Identity)
        ) {
            return VIEW_COST;
        }
        let Some(class) = egraph.lookup(node.clone()) else { return f64::INFINITY };
        let data = &egraph[class].data;
        if !data.valid || data.types.is_empty() {
            return f64::INFINITY;
        }
        // A dim without a bound of its own (`past_sequence+sequence`) is bounded through the
        // inputs' symbol bounds, for the operation count and the bytes alike; a tensor whose
        // size still has none is assumed large.
        let bounded = |t: &slmtvm_ir::TypeInfo| bounded(t, &egraph.analysis.bounds);
        let in_types: Vec<Option<slmtvm_ir::TypeInfo>> = ch.iter().map(|&c| egraph[c].data.ty().map(bounded)).collect();
        let ins: Vec<Option<&slmtvm_ir::TypeInfo>> = in_types.iter().map(Option::as_ref).collect();
        let outs: Vec<slmtvm_ir::TypeInfo> = data.types.iter().map(bounded).collect();
        let flops = key.op.flops(&ins, &outs) as f64;
        let bytes_of = |t: &slmtvm_ir::TypeInfo| {
            t.shape.numel_upper().map_or(UNBOUNDED_BYTES, |n| n as f64 * t.dtype.size() as f64)
        };
        let bytes: f64 =
            ins.iter().flatten().map(|t| bytes_of(t)).sum::<f64>() + outs.iter().map(bytes_of).sum::<f64>();
        let float_vector = outs.iter().all(|t| matches!(t.dtype, slmtvm_ir::DType::F32 | slmtvm_ir::DType::I32));
        let mut compute = flops / if float_vector { self.lanes } else { 1.0 };
        if let (Op::Attention(_), Some(k)) = (&*key.op, self.attention_cycles_per_flop) {
            compute = flops * k;
        }
        let vector_attention = matches!(*key.op, Op::Attention(_)) && self.attention_cycles_per_flop.is_none();
        if self.fma
            && (matches!(*key.op, Op::MatMul(_) | Op::Gemm(_) | Op::Dense(_) | Op::FusedMlp(_)) || vector_attention)
        {
            compute /= 2.0;
        }
        // The integer product's multiply-adds pair up too (vpmaddwd, sdot, the widening
        // multiply-accumulate), on every target, FMA or not.
        if matches!(*key.op, Op::QDense(_)) {
            compute /= 2.0;
        }
        if let Op::Gemm(g) = &*key.op {
            compute *= gemm_schedule_factor(g, self.lanes);
        }
        // A division has about four times a multiplication's throughput cost.
        if matches!(*key.op, Op::Binary(slmtvm_ir::ops::BinaryOp::Div)) {
            compute *= 4.0;
        }
        compute + bytes / self.bytes_per_cycle
    }
}

/// `t` with every symbolic dim that lacks a bound of its own bounded through `bounds` (the
/// graph inputs' symbol bounds) when its polynomial can be.
fn bounded(t: &slmtvm_ir::TypeInfo, bounds: &std::collections::BTreeMap<String, usize>) -> slmtvm_ir::TypeInfo {
    let dims = t
        .shape
        .0
        .iter()
        .map(|d| match d {
            slmtvm_ir::Dim::Sym { name, bound: None } => {
                slmtvm_ir::Dim::Sym { name: name.clone(), bound: d.poly().upper(bounds) }
            }
            d => d.clone(),
        })
        .collect();
    slmtvm_ir::TypeInfo::new(t.dtype, slmtvm_ir::Shape(dims))
}

/// How much more the matmul kernel's dot schedule (B contiguous along K: Gemm with `transB`)
/// costs per FLOP than its broadcast schedule (B contiguous along N).
///
/// Calibrated on x86_64-v3 (2-core shared host) with Gemm-only models built both ways
/// (`transB=0` with W, `transB=1` with Wᵀ), `--opt-level 0`, fastest of 3 × 300 runs, and
/// callgrind instruction counts per run:
///
/// | M×K×N | broadcast | dot | instructions broadcast → dot |
/// |---|---:|---:|---:|
/// | 32×32×64 | 3.24 µs | 3.71 µs (+15%) | 75.2 k → 87.7 k (+17%) |
/// | 128×384×384 | 820 µs | 891 µs (+9%) | 21.3 M → 20.5 M (−4%) |
/// | 128×1536×384 | 3.78 ms | 3.57 ms (−6%, within the host's noise) | 85.0 M → 80.6 M (−5%) |
///
/// The dot schedule's horizontal sum per output weighs most at small K, which the tiny test
/// models have; 1.1 is the middle of the measured ratios. Any factor above 1 makes extraction
/// take a constant weight packed at compile time (`gemm-pack-weight`), which costs nothing
/// at run time.
pub const DOT_SCHEDULE_FACTOR: f64 = 1.1;

/// The compute-cost factor of Gemm `g`'s schedule against the broadcast schedule: the dot
/// schedule for `transB` alone, the scalar schedule (no vector lanes) for both transposes.
fn gemm_schedule_factor(g: &slmtvm_ir::ops::Gemm, lanes: f64) -> f64 {
    match (g.trans_a, g.trans_b) {
        (true, true) => lanes,
        (false, true) => DOT_SCHEDULE_FACTOR,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::CostModel;
    use slmtvm_targets::Target;

    #[test]
    fn the_cost_model_follows_the_target() {
        let of = |spec: &str| CostModel::for_target(&Target::from_spec(spec).unwrap());
        // Vectors of four f32 lanes; FMA only from x86-64-v3 (AVX2 + FMA) and on aarch64.
        assert_eq!((of("x86_64").lanes, of("x86_64").fma), (4.0, false));
        assert_eq!((of("x86_64-v3").lanes, of("x86_64-v3").fma), (4.0, true));
        assert_eq!((of("aarch64").lanes, of("aarch64").fma), (4.0, true));
        // Scalar riscv64 computes one lane at a time, riscv64 with V four.
        assert_eq!((of("riscv64").lanes, of("riscv64").fma), (1.0, false));
        assert_eq!(of("riscv64-v").lanes, 4.0);
    }
}
