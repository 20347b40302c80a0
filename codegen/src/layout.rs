//! Memory layout of tensors with symbolic dims, and the symbols the compiled model takes.
//!
//! # Bound layout
//! A symbolic dim (`seq`, `past+1`, `batch*seq`) must have an upper bound (`--bound seq=512`);
//! every tensor is stored row-major at its **physical shape**, each symbolic dim replaced by
//! its bound. Strides are therefore compile-time constants, the arena is planned for the
//! bounds, and the valid elements of a tensor are the prefix `[0, value)` along each symbolic
//! axis. Kernels run position-wise work (elementwise, matmul rows and columns, norms over
//! static axes, transposes) over the physical extent (what lies beyond the valid prefix is
//! never read into a valid element), and take the run-time extent from the symbol values
//! wherever an axis is reduced over or shifted (softmax and reductions over a symbolic axis,
//! the contraction of a matmul, concatenation, slicing or gathering along a symbolic axis, the
//! values `Shape` reports). An operator that would need the run-time extent in a way no kernel
//! implements is refused at compile time with an error naming the node.
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
        Ok(Layout { phys, symbols })
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
