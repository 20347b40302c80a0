//! Tensor shapes whose dims are known sizes or named symbols with an optional upper bound.

use crate::error::ShapeParseError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest tensor the IR accepts, in bytes (16 GiB). Anything larger is treated as a
/// corrupt or hostile model rather than allocated.
pub const MAX_TENSOR_BYTES: u64 = 1 << 34;

/// The placeholder name of a dim inference cannot know; see [`Dim::unknown`].
pub const UNKNOWN_DIM: &str = "?";

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dim {
    /// A size known at compile time.
    Known(usize),
    /// A size known only at run time, named, with an optional upper bound (`seq<=512`).
    Sym {
        /// The symbol's name; equal names denote equal sizes within a graph.
        name: String,
        /// The largest value the symbol may take at run time, when known.
        bound: Option<usize>,
    },
}

impl Dim {
    /// A named symbolic dim.
    pub fn sym(name: impl Into<String>, bound: Option<usize>) -> Dim {
        Dim::Sym { name: name.into(), bound }
    }

    /// A dim that inference cannot know statically (a shape computed at run time). The graph
    /// renames each such dim to a fresh symbol right after inferring the node that made it.
    pub fn unknown() -> Dim {
        Dim::Sym { name: UNKNOWN_DIM.to_string(), bound: None }
    }

    /// True for a dim made by [`Dim::unknown`] and not yet renamed.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Dim::Sym { name, .. } if name == UNKNOWN_DIM)
    }

    /// The size if known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym { .. } => None,
        }
    }

    /// The size as a polynomial: a constant, or the polynomial the symbol's name spells.
    pub fn poly(&self) -> crate::sym::Poly {
        use crate::sym::Poly;
        match self {
            Dim::Known(n) => Poly::constant(*n as i64),
            Dim::Sym { name, .. } => Poly::parse(name).unwrap_or_else(|| Poly::symbol(name)),
        }
    }

    /// The dim of a polynomial size: known when constant and not negative, else a symbol named
    /// by its canonical text (bound unknown; [`crate::Graph::infer`] sets bounds). A negative
    /// constant is an unknown dim.
    pub fn from_poly(p: &crate::sym::Poly) -> Dim {
        if p.symbols().iter().any(|s| s == UNKNOWN_DIM) {
            return Dim::unknown();
        }
        match p.as_const() {
            Some(c) => usize::try_from(c).map(Dim::Known).unwrap_or_else(|_| Dim::unknown()),
            None => Dim::Sym { name: p.to_string(), bound: None },
        }
    }

    /// This dim with its bound computed from the bounds of the single-symbol dims in `srcs`
    /// (for a dim made by [`Dim::from_poly`] out of those dims).
    pub fn bounded_by(self, srcs: &[&Dim]) -> Dim {
        let Dim::Sym { name, bound: None } = &self else { return self };
        let bounds: std::collections::BTreeMap<String, usize> = srcs
            .iter()
            .filter_map(|d| match d {
                Dim::Sym { name, bound: Some(b) } if crate::shape::is_symbol_name(name) => Some((name.clone(), *b)),
                _ => None,
            })
            .collect();
        let b = self.poly().upper(&bounds);
        Dim::Sym { name: name.clone(), bound: b }
    }

    /// The size if known, else the symbol's bound if it has one.
    pub fn upper(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym { bound, .. } => *bound,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym { name, bound: None } => write!(f, "{name}"),
            Dim::Sym { name, bound: Some(b) } => write!(f, "{name}<={b}"),
        }
    }
}

/// A tensor shape: one [`Dim`] per axis (empty for a scalar).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of known dims.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dims as sizes when every dim is known.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }

    /// True when every dim is known.
    pub fn is_known(&self) -> bool {
        self.0.iter().all(|d| d.known().is_some())
    }

    /// The element count when every dim is known; `None` on overflow or a symbolic dim.
    pub fn numel(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, d| acc.checked_mul(d.known()?))
    }

    /// The element count at the symbols' bounds; `None` on overflow or an unbounded symbol.
    pub fn numel_upper(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, d| acc.checked_mul(d.upper()?))
    }

    /// Checks that a tensor of this shape and `elem_size`-byte elements stays within
    /// [`MAX_TENSOR_BYTES`] (at the symbols' bounds where they have one).
    pub fn check_size(&self, elem_size: usize) -> Result<(), String> {
        let mut bytes: u64 = elem_size as u64;
        for d in &self.0 {
            let n = match d.upper() {
                Some(n) => n as u64,
                None => continue,
            };
            bytes = bytes
                .checked_mul(n)
                .filter(|&b| b <= MAX_TENSOR_BYTES)
                .ok_or_else(|| format!("shape {self} is too large (over {MAX_TENSOR_BYTES} bytes)"))?;
        }
        Ok(())
    }

    /// Normalizes a possibly negative axis against this rank.
    pub fn axis(&self, axis: i64) -> Result<usize, String> {
        normalize_axis(axis, self.rank())
    }

    /// Parses the text form `[2, seq<=512, 384]`.
    pub fn parse(s: &str) -> Result<Shape, ShapeParseError> {
        let s = s.trim();
        let inner = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| ShapeParseError::NotBracketed(s.to_string()))?;
        if inner.trim().is_empty() {
            return Ok(Shape(vec![]));
        }
        // Dims are separated by the commas outside parentheses (`min(seq,3)` is one dim).
        let mut dims = Vec::new();
        let (mut depth, mut from) = (0i32, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    dims.push(parse_dim(inner[from..i].trim())?);
                    from = i + 1;
                }
                _ => {}
            }
        }
        dims.push(parse_dim(inner[from..].trim())?);
        Ok(Shape(dims))
    }
}

/// Parses one dim: a size, a symbol or a polynomial of symbols (`past+1`), optionally with a
/// bound (`seq<=512`).
pub fn parse_dim(d: &str) -> Result<Dim, ShapeParseError> {
    if let Ok(n) = d.parse::<usize>() {
        return Ok(Dim::Known(n));
    }
    let (name, bound) = match d.split_once("<=") {
        Some((n, b)) => {
            let b = b.trim().parse::<usize>().map_err(|_| ShapeParseError::BadBound(d.to_string()))?;
            (n.trim(), Some(b))
        }
        None => (d, None),
    };
    if is_symbol_name(name) {
        return Ok(Dim::sym(name, bound));
    }
    let p = crate::sym::Poly::parse(name).ok_or_else(|| ShapeParseError::BadDim(d.to_string()))?;
    match Dim::from_poly(&p) {
        Dim::Sym { name, .. } if p.as_const().is_none() => Ok(Dim::Sym { name, bound }),
        _ => Err(ShapeParseError::Negative(d.to_string())),
    }
}

/// True when `s` can name a symbolic dim: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_symbol_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Normalizes a possibly negative `axis` for a tensor of `rank` axes.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// A value's static type: dtype and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TypeInfo {
    /// Element type.
    pub dtype: crate::DType,
    /// Shape, possibly symbolic.
    pub shape: Shape,
}

impl TypeInfo {
    /// Builds a type.
    pub fn new(dtype: crate::DType, shape: Shape) -> TypeInfo {
        TypeInfo { dtype, shape }
    }
}

impl fmt::Display for TypeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_text_round_trips() {
        for s in ["[]", "[1]", "[2, seq<=512, 384]", "[batch, seq]"] {
            assert_eq!(Shape::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Shape::parse("[2, -1]"), Err(ShapeParseError::Negative("-1".into())));
        assert_eq!(Shape::parse("2, 3"), Err(ShapeParseError::NotBracketed("2, 3".into())));
        assert_eq!(Shape::parse("[s<=x]"), Err(ShapeParseError::BadBound("s<=x".into())));
        assert_eq!(Shape::parse("[2, a*]"), Err(ShapeParseError::BadDim("a*".into())));
    }

    #[test]
    fn size_checks_catch_overflow_and_absurd_sizes() {
        assert!(Shape::known(&[1 << 20, 1 << 20]).check_size(4).is_err());
        assert!(Shape::known(&[usize::MAX, 2]).check_size(1).is_err());
        assert!(Shape::known(&[1024, 1024]).check_size(4).is_ok());
        assert_eq!(Shape::known(&[usize::MAX, 2]).numel(), None);
    }

    #[test]
    fn axes_normalize() {
        assert_eq!(normalize_axis(-1, 3), Ok(2));
        assert!(normalize_axis(0, 0).is_err());
        assert!(normalize_axis(3, 3).is_err());
        assert!(normalize_axis(-4, 3).is_err());
    }
}
