//! Graph inputs for `run`: read from `.npy` files, or generated deterministically.

use anyhow::{Result, bail};
use slmtvm_ir::ops::Op;
use slmtvm_ir::{DType, Dim, Graph, Tensor, ValueId};
use std::collections::BTreeMap;
use std::path::Path;

/// SplitMix64: a tiny deterministic generator, so `--random-inputs SEED` gives the same
/// inputs on every machine and in every version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The smallest table size that input `v` indexes through Gather (following shape-only ops).
fn index_bound(g: &Graph, v: ValueId) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut stack = vec![v];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x) {
            continue;
        }
        for n in &g.nodes {
            for (k, _) in n.inputs.iter().enumerate().filter(|(_, i)| **i == Some(x)) {
                match (&n.op, k) {
                    (Op::Gather(ga), 1) => {
                        let data = n.inputs[0].map(|d| g.ty(d));
                        let dim = data.and_then(|t| t.shape.axis(ga.axis).ok().and_then(|a| t.shape.0[a].known()));
                        if let Some(d) = dim {
                            best = Some(best.map_or(d, |b| b.min(d)));
                        }
                    }
                    (
                        Op::Cast(_)
                        | Op::Reshape(_)
                        | Op::Unsqueeze(_)
                        | Op::Squeeze(_)
                        | Op::Flatten(_)
                        | Op::Expand(_),
                        0,
                    ) => {
                        stack.extend(n.outputs.iter().copied());
                    }
                    (Op::Unary(slmtvm_ir::ops::UnaryOp::Identity), 0) => stack.extend(n.outputs.iter().copied()),
                    _ => {}
                }
            }
        }
    }
    best
}

/// A deterministic input for graph input `id`: floats uniform in [-1, 1); integers that index
/// a table (through Gather) uniform over the table; other integers (masks) and bools all ones.
fn random_input(g: &Graph, id: ValueId, rng: &mut SplitMix64) -> Result<Tensor> {
    let v = g.value(id);
    let dims: Vec<usize> =
        v.ty.shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Known(n) => Ok(*n),
                Dim::Sym { name, .. } => {
                    bail!("input '{}' has symbolic dim {name}: fix it with --shape {}=...", v.name, v.name)
                }
            })
            .collect::<Result<_>>()?;
    let n: usize = dims.iter().product();
    let floats: Vec<f64> = match v.ty.dtype {
        DType::F32 | DType::F16 => (0..n).map(|_| rng.unit() * 2.0 - 1.0).collect(),
        DType::Bool => vec![1.0; n],
        _ => match index_bound(g, id) {
            Some(b) if b > 0 => (0..n).map(|_| (rng.unit() * b as f64).floor()).collect(),
            _ => vec![1.0; n],
        },
    };
    Ok(Tensor::from_f64(v.ty.dtype, ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&dims), floats)?))
}

/// Where `run` takes its inputs from, in order of precedence.
pub struct InputSource<'a> {
    /// `--input NAME=FILE` flags.
    pub flags: &'a [String],
    /// `--input-dir DIR`: `DIR/NAME.npy` per input.
    pub dir: Option<&'a Path>,
    /// `--random-inputs SEED`.
    pub seed: Option<u64>,
}

/// Collects one tensor per graph input from `--input NAME=FILE` flags, then `--input-dir`, and
/// for the rest `--random-inputs SEED`.
pub fn gather_inputs(g: &Graph, src: &InputSource) -> Result<BTreeMap<String, Tensor>> {
    let seed = src.seed;
    let mut given = BTreeMap::new();
    for f in src.flags {
        let (name, file) = crate::split_kv(f, "--input")?;
        if g.find(&name).is_none_or(|id| !g.inputs.contains(&id)) {
            let names: Vec<&str> = g.inputs.iter().map(|&i| g.value(i).name.as_str()).collect();
            bail!("--input {name}: the model has no input of that name (inputs: {})", names.join(", "));
        }
        let t = slmtvm_frontend::npy::read_npy(Path::new(&file))?;
        given.insert(name, t);
    }
    let mut rng = SplitMix64(seed.unwrap_or(0));
    for &i in &g.inputs {
        let name = &g.value(i).name;
        if given.contains_key(name) {
            continue;
        }
        if let Some(dir) = src.dir {
            let p = dir.join(format!("{}.npy", slmtvm_frontend::npy::file_stem(name)));
            if p.exists() || seed.is_none() {
                given.insert(name.clone(), slmtvm_frontend::npy::read_npy(&p)?);
                continue;
            }
        }
        if seed.is_none() {
            bail!("input '{name}' has no value: give --input {name}=FILE.npy, --input-dir or --random-inputs SEED");
        }
        given.insert(name.clone(), random_input(g, i, &mut rng)?);
    }
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic() {
        let (mut a, mut b) = (SplitMix64(7), SplitMix64(7));
        let x: Vec<u64> = (0..4).map(|_| a.next()).collect();
        assert_eq!(x, (0..4).map(|_| b.next()).collect::<Vec<_>>());
        assert_ne!(x[0], x[1]);
        assert_eq!(SplitMix64(0).next(), 0xE220_A839_7B1D_CDAF);
    }
}
