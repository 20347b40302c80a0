//! Elementwise kernels: Unary, Binary, Clip, Where, Cast, over broadcast loop nests.

use super::NodeCtx;
use crate::emit::Kb;
use crate::{Error, Result};
use cranelift_codegen::ir::{InstBuilder, Value, types};
use slmtvm_ir::ops::{BinaryOp, UnaryOp};
use slmtvm_ir::{DType, Op};

/// Dims and per-operand element strides of an elementwise loop nest, after merging adjacent
/// axes that every operand walks contiguously (or broadcasts) together.
#[derive(Clone, Debug, PartialEq)]
pub struct Nest {
    /// Loop extents, outermost first.
    pub dims: Vec<usize>,
    /// For each operand, its element stride per loop (0 = broadcast).
    pub strides: Vec<Vec<usize>>,
}

/// The loop nest that walks `out` dims, with each operand of `shapes` broadcast into it.
pub fn broadcast_nest(out: &[usize], shapes: &[&[usize]]) -> Nest {
    let r = out.len();
    let strides: Vec<Vec<usize>> = shapes
        .iter()
        .map(|s| {
            let mut st = vec![0; r];
            let mut acc = 1;
            for k in 0..s.len() {
                let axis = r - 1 - k;
                let d = s[s.len() - 1 - k];
                st[axis] = if d == 1 { 0 } else { acc };
                acc *= d;
            }
            st
        })
        .collect();
    // Merge axis a into a+1 when, for every operand, stride[a] == stride[a+1] * dims[a+1].
    let mut dims: Vec<usize> = Vec::new();
    let mut merged: Vec<Vec<usize>> = vec![Vec::new(); shapes.len()];
    for a in 0..r {
        if out[a] == 1 {
            continue;
        }
        let can_merge = !dims.is_empty() && strides.iter().zip(&merged).all(|(st, m)| m[m.len() - 1] == st[a] * out[a]);
        if can_merge {
            let last = dims.len() - 1;
            dims[last] *= out[a];
            for (st, m) in strides.iter().zip(merged.iter_mut()) {
                let l = m.len() - 1;
                m[l] = st[a];
            }
        } else {
            dims.push(out[a]);
            for (st, m) in strides.iter().zip(merged.iter_mut()) {
                m.push(st[a]);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        merged.iter_mut().for_each(|m| m.push(0));
    }
    Nest { dims, strides: merged }
}

/// Emits the loops of `nest` over operand base pointers `bases` (element size `elem`), calling
/// `body` with each operand's element address and the number of lanes (4 for a vector step, 1
/// for a scalar one).
fn walk(kb: &mut Kb, nest: &Nest, bases: &[Value], elem: usize, body: &mut dyn FnMut(&mut Kb, &[Value], usize)) {
    walk_level(kb, nest, 0, bases.to_vec(), elem, body);
}

fn walk_level(
    kb: &mut Kb,
    nest: &Nest,
    level: usize,
    bases: Vec<Value>,
    elem: usize,
    body: &mut dyn FnMut(&mut Kb, &[Value], usize),
) {
    let n = nest.dims[level];
    let strides: Vec<usize> = nest.strides.iter().map(|s| s[level]).collect();
    if level + 1 < nest.dims.len() {
        kb.for_const(0, n as i64, 1, |kb, i| {
            let next: Vec<Value> =
                bases.iter().zip(&strides).map(|(&b, &s)| if s == 0 { b } else { kb.addr(b, i, s * elem) }).collect();
            walk_level(kb, nest, level + 1, next, elem, body);
        });
        return;
    }
    // Innermost loop: vector steps where every operand is contiguous or broadcast.
    let vectorizable = kb.caps.vector && elem == 4 && strides.iter().all(|&s| s <= 1);
    let vec_end = if vectorizable { n / 4 * 4 } else { 0 };
    if vec_end > 0 {
        kb.for_const(0, vec_end as i64, 4, |kb, i| {
            let at: Vec<Value> =
                bases.iter().zip(&strides).map(|(&b, &s)| if s == 0 { b } else { kb.addr(b, i, s * elem) }).collect();
            body(kb, &at, 4);
        });
    }
    if vec_end < n {
        kb.for_const(vec_end as i64, n as i64, 1, |kb, i| {
            let at: Vec<Value> =
                bases.iter().zip(&strides).map(|(&b, &s)| if s == 0 { b } else { kb.addr(b, i, s * elem) }).collect();
            body(kb, &at, 1);
        });
    }
}

/// Loads `lanes` f32 values at `addr`: a vector load, a splat of a broadcast scalar, or one
/// scalar.
fn load_f32(kb: &mut Kb, addr: Value, lanes: usize, broadcast: bool) -> Value {
    match (lanes, broadcast) {
        (4, false) => kb.load(types::F32X4, addr, 0),
        (4, true) => {
            let s = kb.load(types::F32, addr, 0);
            kb.b.ins().splat(types::F32X4, s)
        }
        _ => kb.load(types::F32, addr, 0),
    }
}

fn f32_const(kb: &mut Kb, v: f32, lanes: usize) -> Value {
    let s = kb.b.ins().f32const(v);
    if lanes == 4 { kb.b.ins().splat(types::F32X4, s) } else { s }
}

fn unary_f32(kb: &mut Kb, op: &UnaryOp, x: Value, lanes: usize) -> Result<Value> {
    Ok(match op {
        UnaryOp::Identity => x,
        UnaryOp::Neg => kb.b.ins().fneg(x),
        UnaryOp::Abs => kb.b.ins().fabs(x),
        UnaryOp::Sqrt => kb.b.ins().sqrt(x),
        UnaryOp::Reciprocal => {
            let one = f32_const(kb, 1.0, lanes);
            kb.b.ins().fdiv(one, x)
        }
        UnaryOp::Relu => {
            // IEEE maximum: NaN stays NaN, as in the reference.
            let zero = f32_const(kb, 0.0, lanes);
            kb.b.ins().fmax(x, zero)
        }
        other => return Err(Error::Graph(format!("codegen for {} is not implemented yet", other.name()))),
    })
}

fn binary_f32(kb: &mut Kb, op: &BinaryOp, a: Value, b: Value) -> Result<Value> {
    Ok(match op {
        BinaryOp::Add => kb.b.ins().fadd(a, b),
        BinaryOp::Sub => kb.b.ins().fsub(a, b),
        BinaryOp::Mul => kb.b.ins().fmul(a, b),
        BinaryOp::Div => kb.b.ins().fdiv(a, b),
        other => return Err(Error::Graph(format!("codegen for {} is not implemented yet", other.name()))),
    })
}

/// Emits the kernel of `cx.node`.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let out_dims = cx.out_dims(0)?;
    let (optr, f32_out) = (cx.out_ptr(0), cx.out_dtype(0) == DType::F32);
    match &cx.node.op {
        Op::Unary(u) if f32_out => {
            let x = cx.in_dims(0)?;
            let nest = broadcast_nest(&out_dims, &[&x, &out_dims]);
            let mut err = None;
            walk(kb, &nest, &[cx.in_ptr(0)?, optr], 4, &mut |kb, at, lanes| {
                let v = load_f32(kb, at[0], lanes, false);
                match unary_f32(kb, u, v, lanes) {
                    Ok(r) => kb.store(r, at[1], 0),
                    Err(e) => err = Some(e),
                }
            });
            err.map_or(Ok(()), Err)
        }
        Op::Binary(bop) if f32_out => {
            let (a, b) = (cx.in_dims(0)?, cx.in_dims(1)?);
            let nest = broadcast_nest(&out_dims, &[&a, &b, &out_dims]);
            let inner = nest.strides.iter().map(|s| s[s.len() - 1] == 0).collect::<Vec<_>>();
            let mut err = None;
            walk(kb, &nest, &[cx.in_ptr(0)?, cx.in_ptr(1)?, optr], 4, &mut |kb, at, lanes| {
                let x = load_f32(kb, at[0], lanes, inner[0]);
                let y = load_f32(kb, at[1], lanes, inner[1]);
                match binary_f32(kb, bop, x, y) {
                    Ok(r) => kb.store(r, at[2], 0),
                    Err(e) => err = Some(e),
                }
            });
            err.map_or(Ok(()), Err)
        }
        _ => Err(cx.unsupported(format!("dtype {}", cx.out_dtype(0)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_merge_contiguous_axes_and_keep_broadcasts() {
        // [2,3,4] + [4]: the bias repeats every 4 elements.
        let n = broadcast_nest(&[2, 3, 4], &[&[2, 3, 4], &[4], &[2, 3, 4]]);
        assert_eq!(n.dims, vec![6, 4]);
        assert_eq!(n.strides, vec![vec![4, 1], vec![0, 1], vec![4, 1]]);
        // Same shapes collapse to one loop.
        let n = broadcast_nest(&[2, 3, 4], &[&[2, 3, 4], &[2, 3, 4]]);
        assert_eq!((n.dims.clone(), n.strides.clone()), (vec![24], vec![vec![1], vec![1]]));
        // [2,1,4] against [2,3,4]: the middle axis is broadcast.
        let n = broadcast_nest(&[2, 3, 4], &[&[2, 1, 4], &[2, 3, 4]]);
        assert_eq!(n.dims, vec![2, 3, 4]);
        assert_eq!(n.strides, vec![vec![4, 0, 1], vec![12, 4, 1]]);
        // A scalar.
        let n = broadcast_nest(&[], &[&[], &[]]);
        assert_eq!(n.dims, vec![1]);
    }
}
