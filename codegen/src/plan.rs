//! Static memory planning: every intermediate tensor gets an offset in one arena, by liveness.
//!
//! - Graph inputs live in the caller's input buffers, graph outputs are computed straight into
//!   the caller's output buffers, constants live in `.rodata`.
//! - Shape-only operators (Reshape, Flatten, Squeeze, Unsqueeze, Identity) produce views: their
//!   output shares its input's bytes, which then stay live until the last view's last use.
//! - Elementwise operators write in place over an input of the output's size that dies at that
//!   node (never over a graph input or a constant).
//! - Buffers are placed greedily by size (largest first) at the lowest offset not overlapping a
//!   buffer whose lifetime intersects, each aligned to [`ARENA_ALIGN`].
//!
//! The plan also reports the lower bound any plan must reach: the largest total size of the
//! buffers live at one node.

use crate::layout::{Layout, view_keeps_layout};
use crate::{Error, Result};
use slmtvm_ir::ops::UnaryOp;
use slmtvm_ir::{Graph, Op, ValueId};
use std::collections::BTreeMap;

/// Alignment of every arena buffer and of the arena itself, in bytes: a cache line, and more
/// than the widest vector load of any target.
pub const ARENA_ALIGN: usize = 64;

/// Where a value's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Graph input `k`, in the caller's buffer.
    Input(usize),
    /// Graph output `k`, in the caller's buffer.
    Output(usize),
    /// A constant in `.rodata`.
    Const(ValueId),
    /// `size` bytes at `offset` in the arena.
    Arena {
        /// Offset from the arena's start.
        offset: usize,
        /// Bytes.
        size: usize,
    },
}

/// The memory plan of a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    /// Storage of every value a node reads or writes (views resolved to their root's storage).
    pub storage: BTreeMap<ValueId, Storage>,
    /// Value whose bytes each view shares (Reshape and the like); absent for non-views.
    pub view_of: BTreeMap<ValueId, ValueId>,
    /// Arena size in bytes (a multiple of [`ARENA_ALIGN`]).
    pub arena_bytes: usize,
    /// The largest total size of arena buffers live at one node: no plan can use less.
    pub lower_bound: usize,
    /// Physical dims of every value and the model's symbols (see [`crate::layout`]).
    pub layout: Layout,
}

/// True for operators whose output is its first input's bytes with another shape.
pub fn is_view(op: &Op) -> bool {
    matches!(op, Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Unary(UnaryOp::Identity))
}

/// True for operators whose output element `i` depends only on element `i` of same-shaped
/// inputs, so the output may overwrite such an input.
fn may_write_in_place(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Clip(_) | Op::Where(_))
}

fn bytes_of(g: &Graph, lay: &Layout, v: ValueId) -> Result<usize> {
    lay.bytes(g, v).ok_or_else(|| Error::TooLarge { tensor: g.value(v).name.clone() })
}

fn round_up(x: usize) -> usize {
    x.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// An arena buffer to place: its size and the node interval it is live over.
#[derive(Clone, Debug)]
struct Buffer {
    size: usize,
    first: usize,
    last: usize,
}

/// Plans the memory of `g`; symbolic dims are planned at their bounds ([`crate::layout`]).
pub fn plan_memory(g: &Graph) -> Result<MemoryPlan> {
    let layout = Layout::of(g)?;
    let n = g.nodes.len();
    let mut storage: BTreeMap<ValueId, Storage> = BTreeMap::new();
    for (k, &v) in g.inputs.iter().enumerate() {
        storage.insert(v, Storage::Input(k));
    }
    for &c in g.consts.keys() {
        storage.insert(c, Storage::Const(c));
    }
    // A graph output that is an input or constant, or listed twice, is copied by the entry
    // point; only outputs computed by a node are written in place.
    for (k, &v) in g.outputs.iter().enumerate() {
        storage.entry(v).or_insert(Storage::Output(k));
    }

    // Views: each value resolves to the root whose bytes it shares. A view of an output or of
    // a value that is itself a graph output is kept as a separate buffer (copied), so that
    // writing one caller buffer never has to happen through another's storage.
    let mut view_of = BTreeMap::new();
    let mut root: BTreeMap<ValueId, ValueId> = BTreeMap::new();
    let resolve = |root: &BTreeMap<ValueId, ValueId>, v: ValueId| *root.get(&v).unwrap_or(&v);
    for node in &g.nodes {
        if let (true, Some(Some(src)), [out]) = (is_view(&node.op), node.inputs.first(), node.outputs.as_slice()) {
            // A reshape the bound layout cannot view is a repacking kernel.
            if !view_keeps_layout(&g.ty(*src).shape.0, &g.ty(*out).shape.0) {
                continue;
            }
            if matches!(storage.get(out), Some(Storage::Output(_))) {
                continue;
            }
            let r = resolve(&root, *src);
            root.insert(*out, r);
            view_of.insert(*out, *src);
        }
    }

    // Lifetimes of arena roots: defined at their node, live until the last use of any view.
    let mut def: BTreeMap<ValueId, usize> = BTreeMap::new();
    let mut last: BTreeMap<ValueId, usize> = BTreeMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        for &o in &node.outputs {
            let r = resolve(&root, o);
            def.entry(r).or_insert(i);
            last.entry(r).or_insert(i);
        }
        for &v in node.inputs.iter().flatten() {
            let r = resolve(&root, v);
            last.insert(r, i);
        }
    }
    for &o in &g.outputs {
        last.insert(resolve(&root, o), n);
    }

    // In place: an elementwise node's output takes over the root of an input of equal size
    // that dies at this node and lives in the arena.
    let mut merged: BTreeMap<ValueId, ValueId> = BTreeMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let [out] = node.outputs.as_slice() else { continue };
        if !may_write_in_place(&node.op) || storage.contains_key(out) || root.contains_key(out) {
            continue;
        }
        let out_bytes = bytes_of(g, &layout, *out)?;
        for &v in node.inputs.iter().flatten() {
            let r = resolve(&root, v);
            let r = *merged.get(&r).unwrap_or(&r);
            let arena = !storage.contains_key(&r);
            if arena
                && last.get(&r) == Some(&i)
                && g.ty(v).shape == g.ty(*out).shape
                && bytes_of(g, &layout, r)? == out_bytes
            {
                merged.insert(*out, r);
                let out_last = last.get(out).copied().unwrap_or(i);
                last.insert(r, out_last.max(i));
                break;
            }
        }
    }
    let class = |v: ValueId| {
        let r = resolve(&root, v);
        *merged.get(&r).unwrap_or(&r)
    };

    // The buffers to place.
    let mut buffers: BTreeMap<ValueId, Buffer> = BTreeMap::new();
    for node in &g.nodes {
        for &o in &node.outputs {
            let c = class(o);
            if storage.contains_key(&c) || buffers.contains_key(&c) {
                continue;
            }
            let size = bytes_of(g, &layout, c)?;
            let (first, last) = (def.get(&c).copied().unwrap_or(0), last.get(&c).copied().unwrap_or(0));
            buffers.insert(c, Buffer { size, first, last });
        }
    }

    // Lower bound: the largest sum of sizes live at one node.
    let mut live = vec![0usize; n + 1];
    for b in buffers.values() {
        for t in live.iter_mut().take(b.last.min(n) + 1).skip(b.first) {
            *t += b.size;
        }
    }
    let lower_bound = live.iter().copied().max().unwrap_or(0);

    // Greedy by size: largest first, lowest offset that fits between overlapping buffers.
    let mut order: Vec<(&ValueId, &Buffer)> = buffers.iter().collect();
    order.sort_by(|a, b| b.1.size.cmp(&a.1.size).then(a.0.cmp(b.0)));
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // offset, size, first, last
    let mut offsets: BTreeMap<ValueId, usize> = BTreeMap::new();
    let mut arena_bytes = 0usize;
    for (&v, b) in order {
        let mut busy: Vec<(usize, usize)> =
            placed.iter().filter(|p| p.2 <= b.last && b.first <= p.3).map(|p| (p.0, p.0 + round_up(p.1))).collect();
        busy.sort();
        let mut offset = 0;
        for (s, e) in busy {
            if offset + b.size <= s {
                break;
            }
            offset = offset.max(e);
        }
        placed.push((offset, b.size, b.first, b.last));
        offsets.insert(v, offset);
        arena_bytes = arena_bytes.max(round_up(offset + b.size));
    }

    for node in &g.nodes {
        for &v in node.inputs.iter().flatten().chain(&node.outputs) {
            if storage.contains_key(&v) {
                continue;
            }
            let c = class(v);
            let s = match storage.get(&c) {
                Some(s) => *s,
                None => {
                    let offset = *offsets
                        .get(&c)
                        .ok_or_else(|| Error::Internal(format!("no buffer for '{}'", g.value(v).name)))?;
                    Storage::Arena { offset, size: bytes_of(g, &layout, c)? }
                }
            };
            storage.insert(v, s);
        }
    }
    Ok(MemoryPlan { storage, view_of, arena_bytes, lower_bound, layout })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slmtvm_ir::ops::{BinaryOp, MatMul, Reshape, Softmax};
    use slmtvm_ir::{DType, Shape, Tensor, TypeInfo};

    fn f32s(dims: &[usize]) -> TypeInfo {
        TypeInfo::new(DType::F32, Shape::known(dims))
    }

    /// x[4,8] -> relu -> exp -> add(x) -> reshape [32] -> neg (output)
    fn chain() -> Graph {
        let mut g = Graph::new("chain");
        let x = g.add_input("x", f32s(&[4, 8]));
        let shape = g.add_const("shape", Tensor::from_vec(&[1], vec![32i64]).unwrap());
        let a = g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(x)], &["a".into()])[0];
        let b = g.add_node("exp", Op::Unary(UnaryOp::Exp), vec![Some(a)], &["b".into()])[0];
        let c = g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(b), Some(x)], &["c".into()])[0];
        let d =
            g.add_node("flat", Op::Reshape(Reshape { allowzero: false }), vec![Some(c), Some(shape)], &["d".into()])[0];
        let e = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(d)], &["e".into()])[0];
        g.outputs = vec![e];
        g.infer().unwrap();
        g
    }

    #[test]
    fn elementwise_chains_reuse_one_buffer_and_views_share_it() {
        let g = chain();
        let p = plan_memory(&g).unwrap();
        let at = |name: &str| p.storage[&g.find(name).unwrap()];
        assert_eq!(at("x"), Storage::Input(0));
        assert_eq!(at("e"), Storage::Output(0));
        // relu, exp and add all write the same 128 bytes; the reshape views them.
        assert_eq!(at("a"), Storage::Arena { offset: 0, size: 128 });
        assert_eq!(at("b"), at("a"));
        assert_eq!(at("c"), at("a"));
        assert_eq!(at("d"), at("a"));
        assert_eq!(p.view_of[&g.find("d").unwrap()], g.find("c").unwrap());
        assert_eq!((p.arena_bytes, p.lower_bound), (128, 128));
    }

    #[test]
    fn overlapping_lifetimes_never_share_bytes() {
        // x -> softmax s1; x -> softmax s2; s1 @ s2 -> out: s1 and s2 are live together.
        let mut g = Graph::new("two");
        let x = g.add_input("x", f32s(&[8, 8]));
        let s1 = g.add_node("s1", Op::Softmax(Softmax { axis: -1 }), vec![Some(x)], &["s1".into()])[0];
        let s2 = g.add_node("s2", Op::Softmax(Softmax { axis: 0 }), vec![Some(x)], &["s2".into()])[0];
        let m = g.add_node("mm", Op::MatMul(MatMul {}), vec![Some(s1), Some(s2)], &["m".into()])[0];
        let o = g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(m)], &["o".into()])[0];
        g.outputs = vec![o];
        g.infer().unwrap();
        let p = plan_memory(&g).unwrap();
        let (a, b) = (p.storage[&s1], p.storage[&s2]);
        let (Storage::Arena { offset: oa, size: sa }, Storage::Arena { offset: ob, size: sb }) = (a, b) else {
            panic!("{a:?} {b:?}")
        };
        assert!(oa + sa <= ob || ob + sb <= oa, "s1 and s2 overlap: {a:?} {b:?}");
        // MatMul reads s1 and s2 while it writes m, so all three are live at that node; relu
        // then writes o straight into the caller's output buffer.
        assert_eq!(p.lower_bound, 3 * 256);
        assert_eq!(p.arena_bytes, 3 * 256);
        assert_eq!(p.storage[&o], Storage::Output(0));
    }

    #[test]
    fn unbounded_symbols_are_refused_naming_the_symbol() {
        let mut g = Graph::new("sym");
        let x = g.add_input("x", TypeInfo::new(DType::F32, Shape::parse("[seq, 4]").unwrap()));
        let a = g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(x)], &["a".into()])[0];
        let b = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(a)], &["b".into()])[0];
        g.outputs = vec![b];
        g.infer().unwrap();
        let e = plan_memory(&g).unwrap_err();
        assert!(
            e.to_string().contains("symbol seq has no upper bound") && e.to_string().contains("--bound seq=N"),
            "{e}"
        );
        // With a bound, the arena is planned for it: a and b at 64 x 4 f32 each (b is the output).
        let mut g2 = g.clone();
        g2.set_symbols(&[("seq".to_string(), slmtvm_ir::Dim::sym("seq", Some(64)))].into()).unwrap();
        let p = plan_memory(&g2).unwrap();
        assert_eq!(p.arena_bytes, 64 * 4 * 4);
        assert_eq!(p.layout.dims(a), &[64, 4]);
    }
}
