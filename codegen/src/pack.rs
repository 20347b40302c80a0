//! Weights packed at compile time into the assembled microkernels' layout.
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

/// One input of a node that its kernel reads packed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackedRead {
    /// The input's position among the node's inputs.
    pub input: usize,
    /// Columns per panel (the schedule's `nr`).
    pub nr: usize,
    /// Rows of the weight (the product's K).
    pub k: usize,
    /// Columns of the weight (the product's N).
    pub n: usize,
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
