//! Memory layout of tensors with symbolic dims, and the symbols the compiled model takes.
//!
//! # Bound layout
//! A symbolic dim (`seq`, `past+1`, `batch*seq`) must have an upper bound (`--bound seq=512`);
//! every tensor is stored row-major at its **physical shape**, each symbolic dim replaced by
//! its bound. Strides are therefore compile-time constants, the arena is planned for the
//! bounds, and the valid elements of a tensor are the prefix `[0, value)` along each symbolic
//! axis; what lies beyond it is padding that no kernel reads as data. Kernels take the
//! run-time extent from the symbol values wherever an axis is reduced over, scanned or shifted
//! (reductions, norms, softmax and running sums over a symbolic axis, the contraction of a
//! matmul, concatenation, slicing or gathering along a symbolic axis, the values `Shape`
//! reports), and for speed wherever a loop starts at a symbolic axis (elementwise loops,
//! product and norm rows); other position-wise work runs over the physical extent, where what
//! lies beyond the valid prefix never reaches a valid element. Each kernel family states its
//! rule in its own `emit` (see [`crate::kernels`]); an operator that would need the run-time
//! extent in a way no kernel implements is refused at compile time with an error naming the
//! node.
//!
//! A view (Reshape and the like) keeps that layout only when each symbolic dim stays the
//! outermost dim of its group of merged or split axes; other reshapes of symbolic tensors are
//! refused.

use crate::{Error, Result};
use slmtvm_ir::{Dim, Graph, Poly, ValueId};
use std::collections::BTreeMap;

/// The symbols of a compiled model, in the order of the `symbols` array `<name>_run` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symbols {
    /// (name, bound), sorted by name.
    pub list: Vec<(String, usize)>,
}

impl Symbols {
    /// Every symbol of the graph inputs' dims (single symbols and those inside polynomials);
    /// each must have a bound.
    pub fn of(g: &Graph) -> Result<Symbols> {
        let bounds = g.symbol_bounds();
        let mut names: Vec<String> =
            g.inputs.iter().flat_map(|&i| g.ty(i).shape.0.iter().flat_map(|d| d.poly().symbols())).collect();
        names.sort();
        names.dedup();
        let mut list = Vec::new();
        for n in names {
            let b = bounds.get(&n).copied().ok_or_else(|| Error::Unbounded { symbol: n.clone() })?;
            list.push((n, b));
        }
        Ok(Symbols { list })
    }

    /// Index of symbol `name` in the run-time array.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|(n, _)| n == name)
    }

    /// True when the model has no symbolic dims.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Physical dims of every value (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    phys: BTreeMap<ValueId, Vec<usize>>,
    /// The model's symbols.
    pub symbols: Symbols,
    /// Caches updated in place: (graph input k, graph output j) where output j is input k
    /// concatenated with new entries along a symbolic axis (`present = Concat(past, new)`), and
    /// input k is laid out at output j's physical shape, so the caller may pass one buffer as
    /// both: the model then writes only the new entries.
    pub in_place: Vec<(usize, usize)>,
}

impl Layout {
    /// Lays out every value of `g`: each symbolic dim at its bound. Errors name the tensor
    /// whose dim is unbounded or not a polynomial of the inputs' symbols.
    pub fn of(g: &Graph) -> Result<Layout> {
        let symbols = Symbols::of(g)?;
        let mut phys = BTreeMap::new();
        for (i, v) in g.values.iter().enumerate() {
            let mut dims = Vec::with_capacity(v.ty.shape.rank());
            for d in &v.ty.shape.0 {
                dims.push(match d {
                    Dim::Known(n) => *n,
                    Dim::Sym { name, bound } => {
                        let p = d.poly();
                        if let Some(s) = p.symbols().into_iter().find(|s| symbols.index(s).is_none()) {
                            return Err(Error::RuntimeDim { tensor: v.name.clone(), dim: name.clone(), symbol: s });
                        }
                        bound.ok_or_else(|| Error::Unbounded { symbol: name.clone() })?
                    }
                });
            }
            phys.insert(ValueId(i as u32), dims);
        }
        let (in_place, chains) = cache_pairs(g);
        for (&(_, j), chain) in in_place.iter().zip(&chains) {
            let out = phys.get(&g.outputs[j]).cloned().unwrap_or_default();
            for &v in chain {
                phys.insert(v, out.clone());
            }
        }
        Ok(Layout { phys, symbols, in_place })
    }

    /// The physical dims of `v`.
    pub fn dims(&self, v: ValueId) -> &[usize] {
        self.phys.get(&v).map_or(&[], Vec::as_slice)
    }

    /// Physical bytes of `v`.
    pub fn bytes(&self, g: &Graph, v: ValueId) -> Option<usize> {
        self.dims(v).iter().try_fold(g.ty(v).dtype.size(), |a, &d| a.checked_mul(d))
    }
}

/// The (input, output) pairs of [`Layout::in_place`], each with the values that share the
/// input's bytes (the input and the identities between it and the Concat): a node
/// `Concat(past, new, …)` along axis `a` whose output is a graph output and whose first input
/// is a graph input (or an identity of one) symbolic along `a`, equal to the output off `a`,
/// and read by no other node except for its shape.
fn cache_pairs(g: &Graph) -> (Vec<(usize, usize)>, Vec<Vec<ValueId>>) {
    use slmtvm_ir::Op;
    use slmtvm_ir::ops::UnaryOp;
    let producers = g.producers();
    let mut pairs = Vec::new();
    let mut chains = Vec::new();
    for n in &g.nodes {
        let (Op::Concat(c), Some(Some(first)), [o]) = (&n.op, n.inputs.first(), n.outputs.as_slice()) else { continue };
        // Walk back through identities to a graph input.
        let mut chain = vec![*first];
        let mut v = *first;
        while let Some(&pi) = producers.get(&v) {
            let p = &g.nodes[pi];
            match (&p.op, p.inputs.first()) {
                (Op::Unary(UnaryOp::Identity), Some(Some(src))) => {
                    v = *src;
                    chain.push(v);
                }
                _ => break,
            }
        }
        let p = v;
        let (Some(k), Some(j)) = (g.inputs.iter().position(|i| *i == p), g.outputs.iter().position(|x| x == o)) else {
            continue;
        };
        let (ps, os) = (&g.ty(p).shape.0, &g.ty(*o).shape.0);
        let Ok(a) = slmtvm_ir::shape::normalize_axis(c.axis, os.len()) else { continue };
        let same_off_axis = ps.len() == os.len() && (0..ps.len()).all(|d| d == a || ps[d] == os[d]);
        // Every reader of a value of the chain is the next link, the Concat, or a shape query.
        let only_reader = chain.iter().all(|&cv| {
            g.nodes.iter().all(|m| {
                !m.inputs.iter().flatten().any(|&i| i == cv)
                    || std::ptr::eq(m, n)
                    || matches!(m.op, Op::Shape(_) | Op::Size(_))
                    || m.outputs.iter().any(|out| chain.contains(out))
            })
        });
        let unique = g.outputs.iter().filter(|x| *x == o).count() == 1
            && !pairs.iter().any(|&(kk, _)| kk == k)
            && !chain.iter().any(|cv| g.outputs.contains(cv));
        if ps[a].known().is_none() && same_off_axis && only_reader && unique {
            pairs.push((k, j));
            chains.push(chain);
        }
    }
    (pairs, chains)
}

/// True when viewing a tensor of `from` dims as `to` dims keeps the bound layout: split into
/// groups of consecutive axes with equal products, every group with a symbolic dim is the
/// symbolic dim alone (with size-1 axes) on both sides, or the symbolic dim followed by static
/// axes on both sides with the same symbolic factor (`[seq, 4, 8]` ↔ `[seq, 32]`).
pub fn view_keeps_layout(from: &[Dim], to: &[Dim]) -> bool {
    if from.iter().chain(to).all(|d| d.known().is_some()) {
        return true;
    }
    let strip = |v: &[Dim]| -> Vec<Dim> { v.iter().filter(|d| **d != Dim::Known(1)).cloned().collect() };
    let (a, b) = (strip(from), strip(to));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // One group: the symbolic head (if any) must be the first axis of both sides.
        let (sa, sb) = (a.get(i).is_some_and(|d| d.known().is_none()), b.get(j).is_some_and(|d| d.known().is_none()));
        if sa != sb {
            return false;
        }
        let (mut pa, mut pb) = (Poly::constant(1), Poly::constant(1));
        if sa {
            if a[i].poly() != b[j].poly() {
                return false;
            }
            i += 1;
            j += 1;
        }
        // Static tails of the group: grow the smaller product until they match.
        loop {
            let (ca, cb) = (pa.as_const().unwrap_or(0), pb.as_const().unwrap_or(0));
            if ca == cb && (ca > 1 || sa || i == a.len() && j == b.len()) {
                break;
            }
            if ca <= cb {
                match a.get(i) {
                    Some(d) if d.known().is_some() => pa = pa.mul(&d.poly()),
                    _ => return false,
                }
                i += 1;
            } else {
                match b.get(j) {
                    Some(d) if d.known().is_some() => pb = pb.mul(&d.poly()),
                    _ => return false,
                }
                j += 1;
            }
            if pa.as_const() == pb.as_const() {
                break;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use slmtvm_ir::Shape;

    fn ok(a: &str, b: &str) -> bool {
        view_keeps_layout(&Shape::parse(a).unwrap().0, &Shape::parse(b).unwrap().0)
    }

    #[test]
    fn views_that_keep_the_bound_layout() {
        assert!(ok("[batch, seq, 32]", "[batch, seq, 4, 8]"));
        assert!(ok("[batch, seq, 4, 8]", "[batch, seq, 32]"));
        assert!(ok("[1, seq, 32]", "[seq, 32]"));
        assert!(ok("[seq, 32]", "[1, seq, 1, 32]"));
        assert!(ok("[2, 3, 4]", "[6, 4]"));
        assert!(!ok("[2, seq, 32]", "[2*seq, 32]"));
        assert!(!ok("[seq, 32]", "[32, seq]"));
        assert!(!ok("[batch, seq]", "[seq, batch]"));
    }
}
