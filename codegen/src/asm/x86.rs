//! x86_64 microkernels (AVX2 + FMA on `ymm`, AVX-512F on `zmm`), assembled with iced-x86.
//!
//! Registers (System V arguments): `rdi` A, `rsi` lda, `rdx` B, `rcx` ldb, `r8` C, `r9` ldc.
//! A's rows are addressed from three base registers (`rdi`, `r11 = A + 5·lda`,
//! `rax = A + 10·lda`) with index `rsi`·{1, 2, 4} or `r10 = 3·lda`, so a tile has at most 15
//! rows; B's four rows of an unrolled step are `rdx`, `rdx + rcx`, `rdx + 2·rcx`,
//! `rdx + r12` (`r12 = 3·ldb`). `rbx` counts the unrolled steps; `rbx` and `r12` are saved.
//!
//! Vector registers: accumulators `0 .. mr·nv` (row-major), then B vectors at the top; AVX2
//! adds a broadcast register (`ymm14`) and, for a partial last vector, the lane mask
//! (`ymm15`, loaded from a constant placed after the code). AVX-512 broadcasts A from memory
//! inside the FMA (`{1to16}`) and masks the last vector with `k1`.

use super::Ukr;
use iced_x86::IcedError;
use iced_x86::code_asm::*;
use slmtvm_targets::Microkernel;

/// Steps of K per iteration of the main loop.
const UNROLL: usize = 4;

/// `ymm0..ymm15` by number.
pub(crate) const YMM: [AsmRegisterYmm; 16] =
    [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15];
/// `zmm0..zmm31` by number.
pub(crate) const ZMM: [AsmRegisterZmm; 32] = [
    zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15, zmm16, zmm17,
    zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31,
];

/// The vector registers of one variant.
struct Regs {
    wide: bool,
    nv: usize,
    mr: usize,
    partial: bool,
    /// Prefetch distance ([`Ukr::pf`]).
    pf: i32,
}

impl Regs {
    fn acc(&self, i: usize, v: usize) -> usize {
        i * self.nv + v
    }
    fn b(&self, v: usize) -> usize {
        let top = if self.wide { 32 } else { 14 };
        top - self.nv + v
    }
}

/// Address of A's row `i` plus `disp` bytes.
fn a_row(i: usize, disp: i32) -> AsmMemoryOperand {
    let base = [rdi, r11, rax][i / 5];
    match i % 5 {
        0 => base + disp,
        1 => base + rsi + disp,
        2 => base + rsi * 2 + disp,
        3 => base + r10 + disp,
        _ => base + rsi * 4 + disp,
    }
}

/// Address of B's row `u` (0..4) of an unrolled step plus `disp` bytes.
fn b_row(u: usize, disp: i32) -> AsmMemoryOperand {
    match u {
        0 => rdx + disp,
        1 => rdx + rcx + disp,
        2 => rdx + rcx * 2 + disp,
        _ => rdx + r12 + disp,
    }
}

/// The code of `u` (an AVX2 or AVX-512 variant).
pub fn microkernel(u: &Ukr) -> Result<Vec<u8>, IcedError> {
    let wide = u.kernel == Microkernel::Avx512;
    let lanes = u.kernel.lanes();
    debug_assert!(u.kernel != Microkernel::Cranelift && (1..=15).contains(&u.mr) && u.nv >= 1);
    let r = Regs { wide, nv: u.nv, mr: u.mr, partial: u.last < lanes, pf: u.pf };
    let vbytes = (lanes * 4) as i32;
    let mut a = CodeAssembler::new(64)?;
    let mut mask = a.create_label();

    save_and_strides(&mut a)?;
    if r.partial {
        if wide {
            a.mov(eax, (1u32 << u.last) - 1)?;
            a.kmovw(k1, eax)?;
        } else {
            a.vmovups(YMM[15], ymmword_ptr(mask))?;
        }
    }
    row_bases(&mut a, u.mr)?;

    // Accumulators: zero, or C.
    if u.acc {
        a.mov(rbx, r8)?;
    }
    for i in 0..u.mr {
        for v in 0..u.nv {
            let x = r.acc(i, v);
            if u.acc {
                load_vec(&mut a, wide, r.partial_at(v), x, rbx + v as i32 * vbytes)?;
            } else if wide {
                a.vpxord(ZMM[x], ZMM[x], ZMM[x])?;
            } else {
                a.vxorps(YMM[x], YMM[x], YMM[x])?;
            }
        }
        if u.acc && i + 1 < u.mr {
            a.add(rbx, r9)?;
        }
    }

    k_loop(&mut a, u.kc, u.mr, &mut |a, s| step(a, &r, s))?;

    // Store the tile.
    for i in 0..u.mr {
        for v in 0..u.nv {
            store_vec(&mut a, wide, r.partial_at(v), r.acc(i, v), r8 + v as i32 * vbytes)?;
        }
        if i + 1 < u.mr {
            a.add(r8, r9)?;
        }
    }
    finish(&mut a, (r.partial && !wide).then_some((&mut mask, u.last)))
}

/// The prologue every microkernel starts with: `rbx` and `r12` saved, `r10 = 3·lda`,
/// `r12 = 3·ldb` (see the module docs).
fn save_and_strides(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.push(rbx)?;
    a.push(r12)?;
    a.lea(r10, qword_ptr(rsi + rsi * 2))?;
    a.lea(r12, qword_ptr(rcx + rcx * 2))
}

/// The base registers of A's rows beyond the fifth (`r11 = A + 5·lda`, `rax = A + 10·lda`)
/// that a tile of `mr` rows uses.
fn row_bases(a: &mut CodeAssembler, mr: usize) -> Result<(), IcedError> {
    if mr > 5 {
        a.lea(r11, qword_ptr(rdi + rsi * 4))?;
        a.add(r11, rsi)?;
    }
    if mr > 10 {
        a.lea(rax, qword_ptr(r11 + rsi * 4))?;
        a.add(rax, rsi)?;
    }
    Ok(())
}

/// The K loop of a tile of `mr` rows: `kc / UNROLL` iterations of UNROLL `step`s (each step
/// reading 4 bytes of every A row and one row of B), then the remaining steps.
fn k_loop(
    a: &mut CodeAssembler,
    kc: usize,
    mr: usize,
    step: &mut dyn FnMut(&mut CodeAssembler, usize) -> Result<(), IcedError>,
) -> Result<(), IcedError> {
    let iters = kc / UNROLL;
    if iters > 0 {
        let mut top = a.create_label();
        a.mov(ebx, iters as u32)?;
        a.set_label(&mut top)?;
        for s in 0..UNROLL {
            step(a, s)?;
        }
        a.lea(rdx, qword_ptr(rdx + rcx * 4))?;
        let step_bytes = (UNROLL * 4) as i32;
        for base in [rdi, r11, rax].into_iter().take(mr.div_ceil(5)) {
            a.add(base, step_bytes)?;
        }
        a.dec(ebx)?;
        a.jne(top)?;
    }
    for s in 0..kc % UNROLL {
        step(a, s)?;
    }
    Ok(())
}

/// The return (`vzeroupper`, the saved registers restored), then, with `mask`, the lane mask
/// of a partial last `ymm` (its first `last` lanes set) at that label; the assembled code.
fn finish(a: &mut CodeAssembler, mask: Option<(&mut CodeLabel, usize)>) -> Result<Vec<u8>, IcedError> {
    a.vzeroupper()?;
    a.pop(r12)?;
    a.pop(rbx)?;
    a.ret()?;
    if let Some((label, last)) = mask {
        a.set_label(label)?;
        let m: Vec<u32> = (0..8).map(|l| if l < last { u32::MAX } else { 0 }).collect();
        a.dd(&m)?;
    }
    a.assemble(0)
}

/// Loads vector register `r` (`zmm` when `wide`, else `ymm`) from `m`, masked when `partial`
/// (by k1, or by the lane mask in ymm15): masked-off lanes are 0 and never read.
pub(crate) fn load_vec(
    a: &mut CodeAssembler,
    wide: bool,
    partial: bool,
    r: usize,
    m: AsmMemoryOperand,
) -> Result<(), IcedError> {
    match (wide, partial) {
        (true, false) => a.vmovups(ZMM[r], zmmword_ptr(m)),
        (true, true) => a.vmovups(ZMM[r].k1().z(), zmmword_ptr(m)),
        (false, false) => a.vmovups(YMM[r], ymmword_ptr(m)),
        (false, true) => a.vmaskmovps(YMM[r], YMM[15], ymmword_ptr(m)),
    }
}

/// Stores vector register `r` to `m`, masked like [`load_vec`].
pub(crate) fn store_vec(
    a: &mut CodeAssembler,
    wide: bool,
    partial: bool,
    r: usize,
    m: AsmMemoryOperand,
) -> Result<(), IcedError> {
    match (wide, partial) {
        (true, false) => a.vmovups(zmmword_ptr(m), ZMM[r]),
        (true, true) => a.vmovups(zmmword_ptr(m).k1(), ZMM[r]),
        (false, false) => a.vmovups(ymmword_ptr(m), YMM[r]),
        (false, true) => a.vmaskmovps(ymmword_ptr(m), YMM[15], YMM[r]),
    }
}

impl Regs {
    /// Whether vector `v` of a row is the partial last one.
    fn partial_at(&self, v: usize) -> bool {
        self.partial && v + 1 == self.nv
    }
}

/// One step of K (`s`-th of an unrolled iteration): B's row into the B registers, then every
/// A element of the step times them into the accumulators.
fn step(a: &mut CodeAssembler, r: &Regs, s: usize) -> Result<(), IcedError> {
    let vbytes = if r.wide { 64 } else { 32 };
    for v in 0..r.nv {
        load_vec(a, r.wide, r.partial_at(v), r.b(v), b_row(s, v as i32 * vbytes))?;
    }
    if r.pf != 0 {
        for line in 0..(r.nv * vbytes as usize).div_ceil(64) {
            a.prefetcht1(byte_ptr(b_row(s, r.pf + 64 * line as i32)))?;
        }
    }
    let disp = (s * 4) as i32;
    for i in 0..r.mr {
        if r.wide {
            for v in 0..r.nv {
                a.vfmadd231ps(ZMM[r.acc(i, v)], ZMM[r.b(v)], dword_bcst(a_row(i, disp)))?;
            }
        } else {
            a.vbroadcastss(YMM[14], dword_ptr(a_row(i, disp)))?;
            for v in 0..r.nv {
                a.vfmadd231ps(YMM[r.acc(i, v)], YMM[r.b(v)], YMM[14])?;
            }
        }
    }
    Ok(())
}

/// The code of an integer microkernel (AVX2 `ymm`; see [`crate::asm::IUkr`]):
/// `C[mr × cols] = Σ_p A[i, p]·B[p, cols]` in i32, where A's rows hold pairs of i16 (4 bytes
/// per pair, `lda` bytes apart) and B is packed 8-bit pairs ([`crate::pack::pack_pairs`]:
/// `ldb` bytes per pair row, 16 bytes per 8 columns). Per pair step: B's vectors loaded and
/// widened to i16 (`vpmovsxbw`, `vpmovzxbw` for u8), each row's pair broadcast
/// (`vpbroadcastd`), `vpmaddwd` (two exact i16 products summed in i32) into a temporary and
/// `vpaddd` into the accumulator. The last vector's store is masked (`vpmaskmovd`) when it is
/// partial; B's panel is padded, so its loads never are.
pub fn int_microkernel(u: &super::IUkr) -> Result<Vec<u8>, IcedError> {
    debug_assert!((1..=13).contains(&u.mr) && (1..=2).contains(&u.nv) && u.mr * u.nv + u.nv + 2 <= 16);
    let (bcast, tmp) = (14, 15);
    let acc = |i: usize, v: usize| i * u.nv + v;
    let breg = |v: usize| 14 - u.nv + v;
    let partial = u.last < 8;
    let mut a = CodeAssembler::new(64)?;
    let mut mask = a.create_label();
    save_and_strides(&mut a)?;
    row_bases(&mut a, u.mr)?;
    for i in 0..u.mr {
        for v in 0..u.nv {
            a.vpxor(YMM[acc(i, v)], YMM[acc(i, v)], YMM[acc(i, v)])?;
        }
    }
    let mut step = |a: &mut CodeAssembler, s: usize| -> Result<(), IcedError> {
        for v in 0..u.nv {
            let m = xmmword_ptr(b_row(s, v as i32 * 16));
            if u.signed_b { a.vpmovsxbw(YMM[breg(v)], m)? } else { a.vpmovzxbw(YMM[breg(v)], m)? }
        }
        for i in 0..u.mr {
            a.vpbroadcastd(YMM[bcast], dword_ptr(a_row(i, (s * 4) as i32)))?;
            for v in 0..u.nv {
                a.vpmaddwd(YMM[tmp], YMM[bcast], YMM[breg(v)])?;
                a.vpaddd(YMM[acc(i, v)], YMM[acc(i, v)], YMM[tmp])?;
            }
        }
        Ok(())
    };
    k_loop(&mut a, u.kc, u.mr, &mut step)?;
    if partial {
        a.vmovdqu(YMM[bcast], ymmword_ptr(mask))?;
    }
    for i in 0..u.mr {
        for v in 0..u.nv {
            let m = r8 + v as i32 * 32;
            if partial && v + 1 == u.nv {
                a.vpmaskmovd(ymmword_ptr(m), YMM[bcast], YMM[acc(i, v)])?;
            } else {
                a.vmovdqu(ymmword_ptr(m), YMM[acc(i, v)])?;
            }
        }
        if i + 1 < u.mr {
            a.add(r8, r9)?;
        }
    }
    finish(&mut a, partial.then_some((&mut mask, u.last)))
}

/// Accumulators of [`peak`]: enough independent FMA chains for two FMA units of latency 4–6.
pub const PEAK_ACCS: usize = crate::abi::PEAK_FMAS;

/// `void peak(int64_t iters, float *out)`: `iters` iterations of [`PEAK_ACCS`] independent
/// FMAs on `kernel`'s vectors, their sum's first lane stored at `out` (the FMA peak the
/// assembled kernels are measured against).
pub fn peak(kernel: Microkernel) -> Result<Vec<u8>, IcedError> {
    let wide = kernel == Microkernel::Avx512;
    let mut a = CodeAssembler::new(64)?;
    // x = 0.999999, y = 1e-7 (the Cranelift peak loop's constants) in the top two registers.
    let (x, y) = (PEAK_ACCS, PEAK_ACCS + 1);
    for (reg, val) in [(x, 0.999_999f32), (y, 1e-7f32)] {
        a.mov(eax, val.to_bits())?;
        a.vmovd(xmm0, eax)?;
        if wide {
            a.vbroadcastss(ZMM[reg], xmm0)?;
        } else {
            a.vbroadcastss(YMM[reg], xmm0)?;
        }
    }
    for k in 0..PEAK_ACCS {
        a.mov(eax, (1.0f32 + k as f32 * 1e-3).to_bits())?;
        a.vmovd(xmm15, eax)?;
        if wide {
            a.vbroadcastss(ZMM[k], xmm15)?;
        } else {
            a.vbroadcastss(YMM[k], xmm15)?;
        }
    }
    let mut top = a.create_label();
    let mut done = a.create_label();
    a.test(rdi, rdi)?;
    a.jle(done)?;
    a.set_label(&mut top)?;
    for k in 0..PEAK_ACCS {
        if wide {
            a.vfmadd213ps(ZMM[k], ZMM[x], ZMM[y])?;
        } else {
            a.vfmadd213ps(YMM[k], YMM[x], YMM[y])?;
        }
    }
    a.dec(rdi)?;
    a.jne(top)?;
    a.set_label(&mut done)?;
    for k in 1..PEAK_ACCS {
        if wide {
            a.vaddps(ZMM[0], ZMM[0], ZMM[k])?;
        } else {
            a.vaddps(YMM[0], YMM[0], YMM[k])?;
        }
    }
    a.vmovss(dword_ptr(rsi), xmm0)?;
    a.vzeroupper()?;
    a.ret()?;
    a.assemble(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ukr(kernel: Microkernel, mr: usize, nv: usize, last: usize, kc: usize, acc: bool) -> Ukr {
        Ukr { kernel, mr, nv, last, kc, acc, pf: if acc { 0 } else { 4096 } }
    }

    #[test]
    fn every_valid_tile_assembles() {
        for kernel in [Microkernel::Avx2, Microkernel::Avx512] {
            let lanes = kernel.lanes();
            let regs = if kernel == Microkernel::Avx512 { 32 } else { 14 };
            for nv in 1..=4 {
                for mr in (1..=15).filter(|mr| mr * nv + nv <= regs) {
                    for last in [1, lanes / 2, lanes] {
                        for kc in [1, 4, 7] {
                            let code = microkernel(&ukr(kernel, mr, nv, last, kc, kc == 7)).unwrap();
                            assert_eq!(code[code.len() - 1 - if last < lanes && lanes == 8 { 32 } else { 0 }], 0xc3);
                        }
                    }
                }
            }
            assert!(!peak(kernel).unwrap().is_empty());
        }
        for nv in 1..=2 {
            for mr in (1..=13).filter(|mr| mr * nv + nv + 2 <= 16) {
                for last in [1, 5, 8] {
                    for kc in [1, 4, 7] {
                        let code =
                            int_microkernel(&super::super::IUkr { mr, nv, last, kc, signed_b: kc != 4 }).unwrap();
                        assert_eq!(code[code.len() - 1 - if last < 8 { 32 } else { 0 }], 0xc3);
                    }
                }
            }
        }
    }
}
