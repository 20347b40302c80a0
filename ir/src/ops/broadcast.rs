//! Multidirectional (NumPy) broadcasting, shared by every operator that broadcasts.

use crate::{Dim, OpError, Shape};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// Broadcasts two static shapes. A known 1 yields to the other dim; equal symbols stay; a
/// symbol against a known size > 1 takes the known size (the symbol must equal it at run time).
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Result<Shape, OpError> {
    let rank = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = dim_from_end(a, rank - i);
        let db = dim_from_end(b, rank - i);
        out.push(
            broadcast_dim(&da, &db)
                .ok_or_else(|| OpError::Invalid(format!("shapes {a} and {b} do not broadcast (axis {i})")))?,
        );
    }
    Ok(Shape(out))
}

/// Broadcasts any number of static shapes.
pub fn broadcast_all(shapes: &[&Shape]) -> Result<Shape, OpError> {
    shapes.iter().try_fold(Shape(vec![]), |acc, s| broadcast_shapes(&acc, s))
}

fn dim_from_end(s: &Shape, k: usize) -> Dim {
    if k <= s.rank() { s.0[s.rank() - k].clone() } else { Dim::Known(1) }
}

fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Known(1), d) | (d, Dim::Known(1)) => Some(d.clone()),
        (Dim::Known(x), Dim::Known(y)) => (x == y).then(|| a.clone()),
        (Dim::Known(_), Dim::Sym { .. }) => Some(a.clone()),
        (Dim::Sym { .. }, Dim::Known(_)) => Some(b.clone()),
        (Dim::Sym { name: na, .. }, Dim::Sym { name: nb, .. }) if na == nb => Some(a.clone()),
        // Two different symbols: one of them must be 1 at run time, or they are equal; the
        // unknown case is kept as an unknown dim.
        (Dim::Sym { .. }, Dim::Sym { .. }) => Some(Dim::unknown()),
    }
}

/// Broadcasts concrete dims.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let rank = a.len().max(b.len());
    let get = |s: &[usize], k: usize| if k <= s.len() { s[s.len() - k] } else { 1 };
    (0..rank)
        .map(|i| {
            let (x, y) = (get(a, rank - i), get(b, rank - i));
            match (x, y) {
                (1, d) | (d, 1) => Ok(d),
                _ if x == y => Ok(x),
                _ => Err(OpError::Invalid(format!("shapes {a:?} and {b:?} do not broadcast"))),
            }
        })
        .collect()
}

/// A view of `a` broadcast to `dims`.
pub fn view_as<'a, T>(a: &'a ArrayD<T>, dims: &[usize]) -> Result<ArrayViewD<'a, T>, OpError> {
    a.broadcast(IxDyn(dims)).ok_or_else(|| OpError::Invalid(format!("cannot broadcast {:?} to {:?}", a.shape(), dims)))
}

/// Applies `f` elementwise to `a` and `b` with broadcasting.
pub fn zip_with<A: Clone, B: Clone, R>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> R,
) -> Result<ArrayD<R>, OpError> {
    let dims = broadcast_dims(a.shape(), b.shape())?;
    let (va, vb) = (view_as(a, &dims)?, view_as(b, &dims)?);
    Ok(ndarray::Zip::from(&va).and(&vb).map_collect(|x, y| f(x.clone(), y.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_broadcast() {
        let s = |t: &str| Shape::parse(t).unwrap();
        assert_eq!(broadcast_shapes(&s("[2, 1, 4]"), &s("[3, 1]")).unwrap(), s("[2, 3, 4]"));
        assert_eq!(broadcast_shapes(&s("[seq, 1]"), &s("[1, 8]")).unwrap(), s("[seq, 8]"));
        assert_eq!(broadcast_shapes(&s("[seq]"), &s("[4]")).unwrap(), s("[4]"));
        assert!(broadcast_shapes(&s("[2, 3]"), &s("[4]")).is_err());
        assert_eq!(broadcast_shapes(&s("[]"), &s("[5]")).unwrap(), s("[5]"));
    }

    #[test]
    fn concrete_zip() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, 2]).unwrap();
        let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![10, 20, 30]).unwrap();
        let c = zip_with(&a, &b, |x, y| x + y).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(c.iter().copied().collect::<Vec<_>>(), vec![11, 21, 31, 12, 22, 32]);
    }
}
