//! The inline math approximations (`slmtvm_codegen::math`, emitted by `emit::math`) compiled for every target
//! preset equal their Rust mirror bit for bit (NaN payloads aside): one object per preset
//! with, per function, a vector kernel (`F32X4` loop and scalar tail, where the target has
//! vectors) and a scalar kernel, `void f(const float* x, [const float* y,] float* out, size_t
//! n)`, linked with a generated C main and run natively or under qemu-user. The objects import
//! nothing (no libm, no helper calls).

use cranelift_codegen::ir::{AbiParam, InstBuilder, Type, UserFuncName, Value, types};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{Linkage, Module, default_libcall_names};
use cranelift_object::{ObjectBuilder, ObjectModule};
use slmtvm_codegen::emit::math;
use slmtvm_codegen::emit::{Caps, Kb};
use slmtvm_codegen::math::{self as approx, Mirror};
use slmtvm_targets::Target;
use slmtvm_targets::toolchain::run_with_timeout;
use slmtvm_tests::cross::runnable_presets;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

type Emit = fn(&mut Kb, &[Value]) -> Value;
type Model = fn(&mut Mirror, &[f32]) -> f32;

/// One function under test: its name, number of arguments, emitter and mirror.
struct Func {
    name: &'static str,
    arity: usize,
    emit: Emit,
    model: Model,
}

fn funcs() -> Vec<Func> {
    vec![
        Func { name: "exp", arity: 1, emit: |kb, a| math::exp(kb, a[0]), model: |m, a| approx::exp_with(m, a[0]) },
        Func { name: "log", arity: 1, emit: |kb, a| math::log(kb, a[0]), model: |m, a| approx::log_with(m, a[0]) },
        Func { name: "erf", arity: 1, emit: |kb, a| math::erf(kb, a[0]), model: |m, a| approx::erf_with(m, a[0]) },
        Func { name: "sin", arity: 1, emit: |kb, a| math::sin(kb, a[0]), model: |m, a| approx::sin_with(m, a[0]) },
        Func { name: "cos", arity: 1, emit: |kb, a| math::cos(kb, a[0]), model: |m, a| approx::cos_with(m, a[0]) },
        Func {
            name: "pow",
            arity: 2,
            emit: |kb, a| math::pow(kb, a[0], a[1]),
            model: |m, a| approx::pow_with(m, a[0], a[1]),
        },
        Func { name: "tanh", arity: 1, emit: |kb, a| math::tanh(kb, a[0]), model: |m, a| approx::tanh_with(m, a[0]) },
        Func {
            name: "sigmoid",
            arity: 1,
            emit: |kb, a| math::sigmoid(kb, a[0]),
            model: |m, a| approx::sigmoid_with(m, a[0]),
        },
        Func { name: "silu", arity: 1, emit: |kb, a| math::silu(kb, a[0]), model: |m, a| approx::silu_with(m, a[0]) },
    ]
}

/// Emits `name(in..., out, n)`: a 4-lane loop and a scalar tail when `vector`, else scalar.
fn define(m: &mut ObjectModule, caps: Caps, f: &Func, name: &str, vector: bool) {
    let ptr = m.target_config().pointer_type();
    let mut sig = m.make_signature();
    sig.params.extend(std::iter::repeat_n(AbiParam::new(ptr), f.arity + 2));
    let id = m.declare_function(name, Linkage::Export, &sig).unwrap();
    let mut ctx = m.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let (ins, out, n) = (p[..f.arity].to_vec(), p[f.arity], p[f.arity + 1]);
        let mut kb = Kb::new(b, caps);
        let body = |kb: &mut Kb, i: Value, ty: Type| {
            let args: Vec<Value> = ins
                .iter()
                .map(|&base| {
                    let a = kb.addr(base, i, 4);
                    kb.load(ty, a, 0)
                })
                .collect();
            let r = (f.emit)(kb, &args);
            let a = kb.addr(out, i, 4);
            kb.store(r, a, 0);
        };
        let zero = kb.iconst(0);
        let start = if vector {
            let n4 = kb.b.ins().band_imm_s(n, -4);
            kb.for_range(zero, n4, 4, |kb, i| body(kb, i, types::F32X4));
            n4
        } else {
            zero
        };
        kb.for_range(start, n, 1, |kb, i| body(kb, i, types::F32));
        kb.b.ins().return_(&[]);
        kb.b.seal_all_blocks();
        kb.b.finalize(m.target_config());
    }
    m.define_function(id, &mut ctx).unwrap_or_else(|e| panic!("{name}: {e:?}"));
}

/// Names of the undefined symbols of an ELF64 little-endian relocatable object.
fn undefined_symbols(obj: &[u8]) -> Vec<String> {
    let u16_at = |o: usize| u16::from_le_bytes(obj[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(obj[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(obj[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let sh = |k: usize| shoff + k * shentsize;
    let mut out = Vec::new();
    for k in 0..shnum {
        if u32_at(sh(k) + 4) != 2 {
            continue; // not SHT_SYMTAB
        }
        let (off, size) = (u64_at(sh(k) + 24), u64_at(sh(k) + 32));
        let strtab = u64_at(sh(u32_at(sh(k) + 40)) + 24);
        for s in (off..off + size).step_by(24).skip(1) {
            let name_at = strtab + u32_at(s);
            let end = obj[name_at..].iter().position(|&c| c == 0).unwrap() + name_at;
            if u16_at(s + 6) == 0 && end > name_at {
                out.push(String::from_utf8_lossy(&obj[name_at..end]).into_owned());
            }
        }
    }
    out
}

/// A few thousand inputs: special values, hard cases, every 2^20-th bit pattern, and dense
/// samples of the ranges where the functions change behaviour.
fn inputs() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::from_bits(0x007f_ffff),
        f32::MAX,
        f32::MIN,
        1.0,
        -1.0,
        0.5,
        2.0,
        88.72283,
        88.72284,
        -87.33655,
        -103.972_08,
        -104.0,
        1e4,
        -1e4,
        std::f32::consts::PI,
        std::f32::consts::FRAC_PI_2,
    ];
    v.extend((0u32..4096).map(|k| f32::from_bits(k << 20 | (k.wrapping_mul(2_654_435_761) >> 12))));
    v.extend((0..2048).map(|k| (k as f32 - 1024.0) * 0.1));
    v.extend((0..1024).map(|k| (k as f32 - 512.0) * 0.013));
    v
}

/// A second argument for each input (for `pow`): exponents mixing integers, halves and
/// arbitrary values of both signs.
fn second_inputs(n: usize) -> Vec<f32> {
    let pool =
        [0.0, -0.0, 1.0, -1.0, 2.0, 3.0, -3.0, 0.5, -0.5, 2.5, 1e10, -1e10, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    (0..n)
        .map(|k| if k % 3 == 0 { pool[(k / 3) % pool.len()] } else { ((k as f32) * 0.618_034).fract() * 40.0 - 20.0 })
        .collect()
}

fn c_array(name: &str, xs: &[f32]) -> String {
    let mut s = format!("static const uint32_t {name}[{}] = {{", xs.len());
    for (k, x) in xs.iter().enumerate() {
        if k % 8 == 0 {
            s.push_str("\n  ");
        }
        write!(s, "0x{:08x}u, ", x.to_bits()).unwrap();
    }
    s.push_str("\n};\n");
    s
}

/// The C main: runs every kernel over the inputs and writes the output bits to stdout.
fn c_main(fs: &[Func], x: &[f32], y: &[f32], variants: &[&str]) -> String {
    let mut s = String::from("#include <stdint.h>\n#include <stddef.h>\n#include <stdio.h>\n#include <string.h>\n");
    s += &c_array("X", x);
    s += &c_array("Y", y);
    for f in fs {
        for v in variants {
            let args = (0..f.arity).map(|_| "const float*, ").collect::<String>();
            writeln!(s, "void m_{}_{v}({args}float*, size_t);", f.name).unwrap();
        }
    }
    writeln!(s, "static float xs[{n}], ys[{n}], out[{n}];", n = x.len()).unwrap();
    s += "int main(void) {\n  memcpy(xs, X, sizeof xs);\n  memcpy(ys, Y, sizeof ys);\n";
    for f in fs {
        for v in variants {
            let args = if f.arity == 1 { "xs, " } else { "xs, ys, " };
            writeln!(s, "  m_{}_{v}({args}out, {});\n  fwrite(out, 4, {}, stdout);", f.name, x.len(), x.len()).unwrap();
        }
    }
    s += "  return 0;\n}\n";
    s
}

fn work_dir(t: &Target) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slmtvm-kernels-math-{}-{}", std::process::id(), t.name()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compiles, links and runs the kernels for `t`; returns mismatch lines.
fn check_target(t: &Target, fs: &[Func], x: &[f32], y: &[f32]) -> Vec<String> {
    let caps = Caps::of(t);
    let isa = t.isa().unwrap();
    let mut m = ObjectModule::new(ObjectBuilder::new(isa, "math", default_libcall_names()).unwrap());
    let variants: &[&str] = if caps.vector { &["v", "s"] } else { &["s"] };
    for f in fs {
        for &v in variants {
            define(&mut m, caps, f, &format!("m_{}_{v}", f.name), v == "v");
        }
    }
    let obj = m.finish().emit().unwrap();
    let undefined = undefined_symbols(&obj);
    assert!(undefined.is_empty(), "{t}: the object imports {undefined:?}");
    let dir = work_dir(t);
    let (o, c, exe) = (dir.join("math.o"), dir.join("main.c"), dir.join("math.exe"));
    std::fs::write(&o, &obj).unwrap();
    std::fs::write(&c, c_main(fs, x, y, variants)).unwrap();
    t.link(&["-O1"], &[c.as_path(), o.as_path()], &exe).unwrap_or_else(|e| panic!("{t}: link: {e}"));
    let out = run_with_timeout(t.command(&exe).unwrap(), Duration::from_secs(120)).unwrap();
    assert!(out.status.success(), "{t}: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    compare(t, fs, x, y, variants, &out.stdout, caps.native_fma)
}

fn compare(t: &Target, fs: &[Func], x: &[f32], y: &[f32], variants: &[&str], got: &[u8], fused: bool) -> Vec<String> {
    let n = x.len();
    assert_eq!(got.len(), fs.len() * variants.len() * n * 4, "{t}: output size");
    let mut words = got.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()));
    let mut mirror = Mirror { fused };
    let mut bad = Vec::new();
    for f in fs {
        for v in variants {
            let mut count = 0;
            for k in 0..n {
                let g = words.next().unwrap();
                let args = [x[k], y[k]];
                let want = (f.model)(&mut mirror, &args[..f.arity]);
                let same = g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan());
                if !same {
                    if count < 5 {
                        bad.push(format!(
                            "{t} {}_{v}: args {:?} gave {g:e} ({:#010x}), mirror {want:e} ({:#010x})",
                            f.name,
                            &args[..f.arity],
                            g.to_bits(),
                            want.to_bits()
                        ));
                    }
                    count += 1;
                }
            }
            if count > 0 {
                bad.push(format!("{t} {}_{v}: {count} of {n} differ", f.name));
            }
        }
    }
    bad
}

#[test]
fn math_kernels_equal_their_mirror_bit_for_bit_on_every_preset() {
    let presets = runnable_presets();
    assert!(!presets.is_empty(), "no target can be linked and run here");
    let x = inputs();
    let y = second_inputs(x.len());
    let fs = funcs();
    let mut bad = Vec::new();
    for t in &presets {
        bad.extend(check_target(t, &fs, &x, &y));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_elf_reader_finds_undefined_symbols() {
    // An object that calls `fmaf` (x86_64 baseline has no fma instruction).
    let t = Target::from_spec("x86_64").unwrap();
    let mut m = ObjectModule::new(ObjectBuilder::new(t.isa().unwrap(), "t", default_libcall_names()).unwrap());
    let mut caps = Caps::of(&t);
    caps.native_fma = true;
    let f = Func { name: "fma", arity: 1, emit: |kb, a| kb.mul_add(a[0], a[0], a[0]), model: |_, a| a[0] };
    define(&mut m, caps, &f, "f", false);
    let obj = m.finish().emit().unwrap();
    assert_eq!(undefined_symbols(&obj), vec!["fmaf".to_string()]);
}
