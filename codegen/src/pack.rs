//! Weights packed at compile time into the assembled microkernels' layout (and MatMulNBits's
//! weights into its kernel's, [`Packing::Nbits`]).
//!
//! The assembled path of the f32 products ([`crate::asm`], `kernels::matmul`'s `assembled`)
//! reads B as rows of one column tile: `kc` rows of `nr` columns. Read in place from a
//! row-major `[K, N]` weight, consecutive rows of a tile are `N·4` bytes apart, so one panel
//! of MiniLM's FFN weight (`[384, 1536]`) spans 1.5 MB of addresses (a TLB entry and a cache
//! set per row). Packed, the weight is `[⌈N/nr⌉ panels][K][nr]`: the panel of column tile
//! `j0` starts at element `j0·K` and its rows are `nr` elements apart (`ldb = nr·4`), so a
//! tile's B is one contiguous run of `kc·nr·4` bytes. The last panel is zero-padded to `nr`
//! columns, so the microkernel's masked loads of the edge tile stay inside the object.
//!
//! Who reads what: the kernel of a product decides, when it takes the assembled path with a
//! whole constant `[K, N]` as B, to read B packed, and reports it ([`PackedRead`], through
//! `kernels::NodeCtx`); the object builder then emits the packed copy (once per constant and
//! `nr`) and passes its address for that input. The decision is the path choice itself, so a
//! kernel can never read packed bytes on another path, nor in-place bytes on this one.
//! FusedMlp, whose products take slices of its weights (column chunks of `W_gate`/`W_up`, row
//! chunks of `W_down`), lays its slices out for the packed layout when its schedule is an
//! assembled one and fails with an internal error if any of its products then does not take
//! the assembled path.

use slmtvm_ir::ops::MatMulNBits;
use slmtvm_ir::{DType, Tensor};

/// One input of a node that its kernel reads packed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackedRead {
    /// The input's position among the node's inputs.
    pub input: usize,
    /// The layout it is read in.
    pub packing: Packing,
}

/// A layout a constant is packed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Packing {
    /// An f32 `[k, n]` weight in panels of `nr` columns (the assembled microkernels').
    Panels {
        /// Columns per panel (the schedule's `nr`).
        nr: usize,
        /// Rows of the weight (the product's K).
        k: usize,
        /// Columns of the weight (the product's N).
        n: usize,
    },
    /// An 8-bit `[k, n]` weight (u8 or i8) as pairs along K in panels of `nr` columns, for
    /// `vpmaddwd` after a widening load ([`pack_pairs`]).
    Pairs {
        /// Columns per panel.
        nr: usize,
        /// Rows of the weight (the product's K).
        k: usize,
        /// Columns of the weight (the product's N).
        n: usize,
    },
    /// A part of a MatMulNBits weight in the layout of its kernel ([`crate::kernels::nbits`]).
    Nbits {
        /// Which input.
        part: NbitsPart,
        /// K, N, bits and block size of the operator.
        k: usize,
        /// Columns.
        n: usize,
        /// Bits per weight.
        bits: usize,
        /// Weights per block along K.
        block: usize,
    },
}

/// The inputs of MatMulNBits its kernel reads packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NbitsPart {
    /// `B`, as rows of K ([`nbits_rows`]).
    Weights,
    /// `scales`, as f32 `[n_blocks][N₁₆]`.
    Scales,
    /// `zero_points` (packed u8 or floats), as f32 `[n_blocks][N₁₆]`.
    ZeroPoints,
}

impl Packing {
    /// The least layout (a range bound for maps keyed by layout).
    pub const MIN: Packing = Packing::Panels { nr: 0, k: 0, n: 0 };

    /// The suffix of the packed copy's symbol.
    pub fn suffix(&self) -> String {
        match self {
            Packing::Panels { nr, .. } => format!("p{nr}"),
            Packing::Pairs { nr, .. } => format!("w{nr}"),
            Packing::Nbits { part: NbitsPart::Weights, .. } => "q".into(),
            Packing::Nbits { part: NbitsPart::Scales, .. } => "qs".into(),
            Packing::Nbits { part: NbitsPart::ZeroPoints, .. } => "qz".into(),
        }
    }

    /// `t` in this layout, or why `t` cannot be packed so (an internal error of the kernel
    /// that asked).
    pub fn pack(&self, t: &Tensor) -> Result<Vec<u8>, String> {
        match *self {
            Packing::Panels { nr, k, n } => {
                if t.dtype() != DType::F32 || t.shape() != [k, n] || nr == 0 {
                    return Err(format!("{t:?} is not an f32 [{k}, {n}] for panels of {nr}"));
                }
                Ok(pack_panels(&t.to_le_bytes(), k, n, nr))
            }
            Packing::Pairs { nr, k, n } => {
                if !matches!(t.dtype(), DType::U8 | DType::I8) || t.shape() != [k, n] || nr == 0 {
                    return Err(format!("{t:?} is not an 8-bit [{k}, {n}] matrix for panels of {nr}"));
                }
                Ok(pack_pairs(&t.to_le_bytes(), k, n, nr))
            }
            Packing::Nbits { part, k, n, bits, block } => {
                let op = MatMulNBits { k, n, bits, block_size: block };
                let nb = op.blocks();
                match part {
                    NbitsPart::Weights => {
                        let b = t.view::<u8>().filter(|b| b.len() == n * nb * op.blob() && bits == 4);
                        let b =
                            b.ok_or_else(|| format!("not 4-bit MatMulNBits weights of [{n}, {nb}, {}]", op.blob()))?;
                        Ok(nbits_rows(b.as_slice().unwrap_or(&b.iter().copied().collect::<Vec<_>>()), k, n, block))
                    }
                    NbitsPart::Scales => {
                        if !t.dtype().is_float() || t.len() != n * nb {
                            return Err(format!("not {} MatMulNBits scales", n * nb));
                        }
                        Ok(block_params(&t.to_f32().iter().copied().collect::<Vec<_>>(), n, nb))
                    }
                    NbitsPart::ZeroPoints => {
                        let z: Vec<f32> = match t.view::<u8>() {
                            Some(z) if z.len() == n * op.zp_row_bytes() => {
                                let z: Vec<u8> = z.iter().copied().collect();
                                let row = op.zp_row_bytes();
                                (0..n * nb)
                                    .map(|i| {
                                        let (c, j) = (i / nb, i % nb);
                                        let bit = j * bits;
                                        f32::from((z[c * row + bit / 8] >> (bit % 8)) & ((1u16 << bits) - 1) as u8)
                                    })
                                    .collect()
                            }
                            None if t.dtype().is_float() && t.len() == n * nb => t.to_f32().iter().copied().collect(),
                            _ => return Err(format!("not MatMulNBits zero points for [{n}, {nb}]")),
                        };
                        Ok(block_params(&z, n, nb))
                    }
                }
            }
        }
    }
}

/// Columns of the MatMulNBits kernel's packed layouts: N rounded up to 16.
pub fn nbits_cols(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// 4-bit MatMulNBits weights (`[n][n_blocks][block/2]`, the low nibble first along K) as rows
/// of K: `[k][N₁₆ / 2]` bytes, each 16 columns `16g..16g + 16` in 8 bytes, byte `j` holding
/// column `16g + j` in its low nibble and `16g + 8 + j` in its high one (so one 8-byte load
/// widens to the 16 columns in order); padded columns 0.
pub fn nbits_rows(b: &[u8], k: usize, n: usize, block: usize) -> Vec<u8> {
    let (np, nb) = (nbits_cols(n), k.div_ceil(block));
    let mut out = vec![0u8; k * np / 2];
    for c in 0..n {
        for r in 0..k {
            let byte = b[(c * nb + r / block) * (block / 2) + (r % block) / 2];
            let q = if r % 2 == 0 { byte & 15 } else { byte >> 4 };
            let (g, j) = (c / 16, c % 16);
            out[r * np / 2 + g * 8 + j % 8] |= q << (4 * (j / 8));
        }
    }
    out
}

/// Per-(column, block) values `v[c·nb + j]` as f32 `[nb][N₁₆]` (little-endian), padded with 0.
fn block_params(v: &[f32], n: usize, nb: usize) -> Vec<u8> {
    let np = nbits_cols(n);
    let mut out = vec![0f32; nb * np];
    for c in 0..n {
        for j in 0..nb {
            out[j * np + c] = v[c * nb + j];
        }
    }
    out.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A row-major `[k, n]` matrix of bytes in panels of `nr` columns of K-pairs:
/// `[⌈n/nr⌉][⌈k/2⌉][nr][2]`, element (r, c) at panel `c/nr`, pair `r/2`, lane `c%nr`, half
/// `r%2` — so 16 bytes hold 8 columns' pair of rows, which a widening load (`vpmovsxbw`)
/// turns into the i16 pairs `vpmaddwd` multiplies by a broadcast pair of A. Missing columns
/// and the odd K's last half are 0.
pub fn pack_pairs(v: &[u8], k: usize, n: usize, nr: usize) -> Vec<u8> {
    let kp = k.div_ceil(2);
    let mut out = vec![0u8; n.div_ceil(nr.max(1)) * kp * nr * 2];
    for r in 0..k {
        for c in 0..n {
            out[((c / nr * kp + r / 2) * nr + c % nr) * 2 + r % 2] = v[r * n + c];
        }
    }
    out
}

/// Bytes of a `[k, n]` f32 matrix packed in panels of `nr` columns (padding included).
pub fn packed_bytes(k: usize, n: usize, nr: usize) -> usize {
    n.div_ceil(nr) * k * nr * 4
}

/// `data` (a row-major `[k, n]` matrix of 4-byte elements, little-endian bytes) packed in
/// panels of `nr` columns: `[⌈n/nr⌉][k][nr]`, the last panel's missing columns zero.
pub fn pack_panels(data: &[u8], k: usize, n: usize, nr: usize) -> Vec<u8> {
    debug_assert_eq!(data.len(), k * n * 4);
    let mut out = vec![0u8; packed_bytes(k, n, nr)];
    for (p, j0) in (0..n).step_by(nr.max(1)).enumerate() {
        let cols = nr.min(n - j0);
        for r in 0..k {
            let src = (r * n + j0) * 4;
            let dst = (p * k + r) * nr * 4;
            out[dst..dst + cols * 4].copy_from_slice(&data[src..src + cols * 4]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every weight of a MatMulNBits B is found at its place in the rows layout.
    #[test]
    fn nbits_rows_place_every_nibble() {
        let (k, n, block): (usize, usize, usize) = (40, 21, 16);
        let nb = k.div_ceil(block);
        let q = |c: usize, r: usize| ((c * 5 + r * 3) % 16) as u8;
        let mut b = vec![0u8; n * nb * block / 2];
        for c in 0..n {
            for r in 0..k {
                b[(c * nb + r / block) * (block / 2) + (r % block) / 2] |= q(c, r) << (4 * (r % 2));
            }
        }
        let rows = nbits_rows(&b, k, n, block);
        assert_eq!(rows.len(), k * 32 / 2);
        for r in 0..k {
            for c in 0..32 {
                let byte = rows[r * 16 + (c / 16) * 8 + (c % 16) % 8];
                let got = (byte >> (4 * ((c % 16) / 8))) & 15;
                assert_eq!(got, if c < n { q(c, r) } else { 0 }, "row {r} column {c}");
            }
        }
    }

    /// Pairs: a [3, 5] matrix in panels of 4 columns; element (r, c) at its place, K padded to
    /// 4 rows and the columns to 8 with zeros.
    #[test]
    fn pairs_in_order_and_zero_padded() {
        let (k, n, nr) = (3, 5, 4);
        let v: Vec<u8> = (0..(k * n) as u8).map(|i| i + 7).collect();
        let p = pack_pairs(&v, k, n, nr);
        assert_eq!(p.len(), 2 * 2 * nr * 2);
        for panel in 0..2 {
            for pair in 0..2 {
                for lane in 0..nr {
                    for half in 0..2 {
                        let (r, c) = (pair * 2 + half, panel * nr + lane);
                        let want = if r < k && c < n { v[r * n + c] } else { 0 };
                        assert_eq!(p[((panel * 2 + pair) * nr + lane) * 2 + half], want, "({r}, {c})");
                    }
                }
            }
        }
    }

    /// Panels of 3 columns of a [2, 7] matrix: element (r, c) at panel c/3, row r, lane c%3;
    /// the last panel's two missing columns zero.
    #[test]
    fn panels_in_order_and_zero_padded() {
        let (k, n, nr) = (2, 7, 3);
        let m: Vec<f32> = (0..k * n).map(|i| i as f32 + 1.0).collect();
        let bytes: Vec<u8> = m.iter().flat_map(|v| v.to_le_bytes()).collect();
        let packed = pack_panels(&bytes, k, n, nr);
        assert_eq!(packed.len(), packed_bytes(k, n, nr));
        let got: Vec<f32> = packed.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        #[rustfmt::skip]
        let want = [
            1.0, 2.0, 3.0, 8.0, 9.0, 10.0,
            4.0, 5.0, 6.0, 11.0, 12.0, 13.0,
            7.0, 0.0, 0.0, 14.0, 0.0, 0.0,
        ];
        assert_eq!(got, want);
    }

    /// A plain reference (element by element) over several shapes, including n < nr and
    /// n a multiple of nr.
    #[test]
    fn matches_reference() {
        for (k, n, nr) in [(1, 1, 16), (5, 16, 16), (3, 33, 16), (17, 40, 32), (0, 5, 8)] {
            let bytes: Vec<u8> = (0..k * n).flat_map(|i| (i as f32 * 0.5 - 3.0).to_le_bytes()).collect();
            let packed = pack_panels(&bytes, k, n, nr);
            assert_eq!(packed.len(), n.div_ceil(nr) * k * nr * 4);
            for p in 0..n.div_ceil(nr) {
                for r in 0..k {
                    for l in 0..nr {
                        let at = ((p * k + r) * nr + l) * 4;
                        let c = p * nr + l;
                        let want = if c < n { &bytes[(r * n + c) * 4..][..4] } else { &[0u8; 4][..] };
                        assert_eq!(&packed[at..at + 4], want, "k={k} n={n} nr={nr} panel {p} row {r} lane {l}");
                    }
                }
            }
        }
    }
}
