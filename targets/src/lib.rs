//! Target descriptions for slmtvm's code generator: which CPU a model is compiled for, the
//! Cranelift ISA settings that describe it, what vector code it may use, and the tools that link
//! and run a test harness for it (Debian's cross gcc, qemu-user).
//!
//! A target is named by a preset (`x86_64`, `x86_64-v3`, `x86_64-v4`, `aarch64`, `aarch64-dotprod`, `riscv64`,
//! `riscv64-v`), optionally followed by Cranelift settings applied on top of it, as in
//! `riscv64 has_v zvl128b` or `x86_64 has_avx has_fma` (see [`Target::from_spec`]). Settings are
//! resolved through Cranelift itself, so a spec names exactly one set of ISA flags.
#![warn(missing_docs)]

pub mod toolchain;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use cranelift_codegen::isa::{self, OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable, SetError, SettingKind};
use thiserror::Error;

/// Errors of target lookup, spec parsing and ISA construction.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The spec does not start with a known preset.
    #[error("unknown target '{given}': expected a preset ({presets}), optionally followed by settings")]
    UnknownTarget {
        /// The spec as given.
        given: String,
        /// The valid preset names, comma-separated.
        presets: String,
    },
    /// A setting name that Cranelift does not know for this architecture.
    #[error("{arch}: unknown setting '{name}'; settings: {settings}; Cranelift presets: {presets}")]
    UnknownSetting {
        /// The target architecture.
        arch: Arch,
        /// The unknown name.
        name: String,
        /// The valid setting names, comma-separated.
        settings: String,
        /// The valid Cranelift preset names (enable-only), comma-separated.
        presets: String,
    },
    /// A register schedule the microkernel it names cannot run.
    #[error("schedule {schedule}: {what}")]
    BadSchedule {
        /// The schedule as written (`6x16`, `avx2:14x16k256`).
        schedule: String,
        /// What is wrong with it.
        what: String,
    },
    /// A known setting with a value it does not accept.
    #[error("{arch}: bad value '{value}' for setting '{name}': {reason}")]
    BadValue {
        /// The target architecture.
        arch: Arch,
        /// The setting's name.
        name: String,
        /// The value as given.
        value: String,
        /// What the setting accepts.
        reason: String,
    },
    /// Cranelift refused to build the ISA.
    #[error("{arch}: Cranelift cannot build this ISA: {message}")]
    Isa {
        /// The target architecture.
        arch: Arch,
        /// Cranelift's message.
        message: String,
    },
    /// [`Target::host`] on a machine that is none of the supported architectures.
    #[error("no target for this host's architecture '{0}'")]
    UnsupportedHost(&'static str),
}

/// A CPU architecture that slmtvm generates code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// x86-64 (AMD64).
    X86_64,
    /// 64-bit Arm (AArch64).
    Aarch64,
    /// 64-bit RISC-V.
    Riscv64,
}

/// An external program and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The command name, looked up on `PATH`.
    pub program: &'static str,
    /// The Debian package to `apt-get install` when the program is missing.
    pub package: &'static str,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Riscv64];

    /// The short name, also the name of the architecture's baseline preset.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The triple given to `cranelift_codegen::isa::lookup_by_name` (ELF, System V calling
    /// convention).
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Riscv64 => "riscv64gc-unknown-linux-gnu",
        }
    }

    /// The width of a pointer (and of `size_t`) in bytes.
    pub fn pointer_bytes(self) -> u32 {
        8
    }

    /// The architecture this program was compiled for, if it is a supported one.
    pub fn host() -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == std::env::consts::ARCH)
    }

    /// The C compiler that links a harness for this architecture on this host: `gcc` when the
    /// host has this architecture, otherwise Debian's cross compiler.
    pub fn c_compiler(self) -> Tool {
        if Arch::host() == Some(self) {
            return Tool { program: "gcc", package: "gcc" };
        }
        match self {
            Arch::X86_64 => Tool { program: "x86_64-linux-gnu-gcc", package: "gcc-x86-64-linux-gnu" },
            Arch::Aarch64 => Tool { program: "aarch64-linux-gnu-gcc", package: "gcc-aarch64-linux-gnu" },
            Arch::Riscv64 => Tool { program: "riscv64-linux-gnu-gcc", package: "gcc-riscv64-linux-gnu" },
        }
    }

    /// The qemu user-mode emulator that runs this architecture's Linux binaries.
    pub fn qemu(self) -> Tool {
        let program = match self {
            Arch::X86_64 => "qemu-x86_64",
            Arch::Aarch64 => "qemu-aarch64",
            Arch::Riscv64 => "qemu-riscv64",
        };
        Tool { program, package: "qemu-user" }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What vector code the code generator may emit for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorCaps {
    /// f32 lanes per vector value used by codegen: 4 everywhere (`F32X4`; wider types fail in
    /// Cranelift 0.135 on x86_64 and aarch64).
    pub lanes_f32: u32,
    /// Whether a vector fused multiply-add is one instruction. When false, Cranelift lowers
    /// `fma` to libcalls (`fmaf`), so codegen must emit `fmul` + `fadd` instead.
    pub fma: bool,
}

/// An optional instruction family that changes how codegen should lower a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// AArch64 `sdot`/`udot` (FEAT_DotProd, Cranelift `has_dotprod`).
    DotProd,
    /// AArch64 `usdot` (FEAT_I8MM, Cranelift `has_i8mm`).
    I8mm,
    /// x86 `vpdpbusd`: AVX-VNNI (`has_avx` + `has_avx_vnni`) or AVX-512 VNNI
    /// (`has_avx512vl` + `has_avx512vnni`).
    Vnni,
}

/// A named CPU preset: the Cranelift settings (`name` or `name=value`, Cranelift presets
/// allowed) applied to the architecture's Cranelift defaults.
struct Preset {
    name: &'static str,
    arch: Arch,
    settings: &'static [&'static str],
    about: &'static str,
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "x86_64",
        arch: Arch::X86_64,
        // Cranelift's `x86-64-v2`: SSE3 to SSE4.2, POPCNT and CMPXCHG16B.
        settings: &["x86-64-v2"],
        about: "x86-64-v2: SSE4.2 and POPCNT, no AVX (vector FMA becomes mul + add)",
    },
    Preset {
        name: "x86_64-v3",
        arch: Arch::X86_64,
        // Cranelift's `x86-64-v3` leaves `has_avx` off, and without it vector `fma` is a libcall.
        settings: &["x86-64-v3", "has_avx"],
        about: "x86-64-v3: AVX2, FMA, BMI1/2, LZCNT (Haswell, Zen and later)",
    },
    Preset {
        name: "x86_64-v4",
        arch: Arch::X86_64,
        // Cranelift's `x86-64-v4` sets AVX-512DQ/VL but not `has_avx512f` (nor `has_avx`).
        settings: &["x86-64-v4", "has_avx", "has_avx512f"],
        about: "x86-64-v4: v3 plus AVX-512F/DQ/VL (Skylake-X, Zen 4 and later)",
    },
    Preset { name: "aarch64", arch: Arch::Aarch64, settings: &[], about: "ARMv8.0-A with NEON, as Cortex-A53" },
    Preset {
        name: "aarch64-dotprod",
        arch: Arch::Aarch64,
        settings: &["has_dotprod"],
        about: "ARMv8.2-A NEON with SDOT/UDOT (Cortex-A55, A76 and later)",
    },
    Preset { name: "riscv64", arch: Arch::Riscv64, settings: &["has_c"], about: "RV64GC, scalar code only" },
    Preset {
        name: "riscv64-v",
        arch: Arch::Riscv64,
        settings: &["has_c", "has_v", "zvl128b"],
        about: "RV64GCV with vector registers of at least 128 bits",
    },
];

/// The name and one-line description of every preset, baseline presets first per architecture.
pub fn presets() -> impl Iterator<Item = (&'static str, &'static str)> {
    PRESETS.iter().map(|p| (p.name, p.about))
}

/// A code generation target: an architecture and the Cranelift ISA settings that describe the
/// CPU. Everything else (vector capabilities, features, qemu arguments) follows from these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    arch: Arch,
    name: String,
    settings: Vec<(String, String)>,
    /// Every ISA flag's value, defaults included.
    flags: BTreeMap<String, String>,
}

impl Target {
    /// Parses `PRESET [setting[=value] ...]`. The settings are Cranelift ISA settings (or
    /// Cranelift presets such as `zvl128b`) applied on top of the preset; a bare name enables
    /// it. Architecture names are the baseline presets, so `riscv64 has_v zvl128b` and
    /// `x86_64 has_avx has_fma` are valid specs.
    pub fn from_spec(spec: &str) -> Result<Target, Error> {
        let mut words = spec.split_whitespace();
        let first = words.next().unwrap_or("");
        let preset = PRESETS.iter().find(|p| p.name == first).ok_or_else(|| Error::UnknownTarget {
            given: spec.to_string(),
            presets: PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        })?;
        let items: Vec<&str> = preset.settings.iter().copied().chain(words).collect();
        let arch = preset.arch;
        let flags = flag_map(arch, &items)?;
        let defaults = flag_map(arch, &[])?;
        let settings = changed(&defaults, &flags);
        for p in PRESETS.iter().filter(|p| p.arch == arch) {
            if flag_map(arch, p.settings)? == flags {
                return Ok(Target { arch, name: p.name.to_string(), settings, flags });
            }
        }
        let baseline = flag_map(arch, PRESETS.iter().find(|p| p.arch == arch).map_or(&[], |p| p.settings))?;
        let mut name = arch.name().to_string();
        for (n, v) in changed(&baseline, &flags) {
            name.push(' ');
            name.push_str(&n);
            if v != "true" {
                name.push('=');
                name.push_str(&v);
            }
        }
        Ok(Target { arch, name, settings, flags })
    }

    /// The baseline preset of `arch` (`x86_64`, `aarch64` or `riscv64`).
    pub fn default_for(arch: Arch) -> Target {
        Target::from_spec(arch.name()).expect("baseline presets are valid (tested)")
    }

    /// The preset for the machine this runs on: on x86_64 `x86_64-v4` or `x86_64-v3` when the
    /// CPU has every feature of that preset, else `x86_64`; on aarch64 `aarch64-dotprod` when the CPU has
    /// dot product instructions, else `aarch64`; on riscv64 the scalar `riscv64` (detecting V is
    /// not stable in std).
    pub fn host() -> Result<Target, Error> {
        #[cfg(target_arch = "x86_64")]
        let v4 = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl");
        #[cfg(target_arch = "x86_64")]
        let name = if std::is_x86_feature_detected!("avx")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2")
            && std::is_x86_feature_detected!("lzcnt")
        {
            if v4 { "x86_64-v4" } else { "x86_64-v3" }
        } else {
            "x86_64"
        };
        #[cfg(target_arch = "aarch64")]
        let name = if std::arch::is_aarch64_feature_detected!("dotprod") { "aarch64-dotprod" } else { "aarch64" };
        #[cfg(target_arch = "riscv64")]
        let name = "riscv64";
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
        return Err(Error::UnsupportedHost(std::env::consts::ARCH));
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
        Target::from_spec(name)
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The preset name, or for a target that matches no preset its canonical spec: the
    /// architecture followed by the settings that differ from its baseline preset, sorted.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A spec that [`Target::from_spec`] parses back to this target (the same as [`Target::name`]).
    pub fn spec_string(&self) -> String {
        self.name.clone()
    }

    /// The Cranelift ISA settings that differ from Cranelift's defaults for the architecture,
    /// as `(name, value)` pairs sorted by name; Cranelift presets are expanded.
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// Whether the boolean ISA setting `name` is on (by default or by this target's settings).
    pub fn flag(&self, name: &str) -> bool {
        self.flags.get(name).is_some_and(|v| v == "true")
    }

    /// The vector capabilities, or `None` when codegen must emit scalar code only (riscv64
    /// without V, where Cranelift panics on vector types; x86_64 below SSE4.2, where it emits
    /// calls to undefined helpers).
    pub fn vector(&self) -> Option<VectorCaps> {
        let f = |n| self.flag(n);
        match self.arch {
            Arch::X86_64 if ["has_sse3", "has_ssse3", "has_sse41", "has_sse42"].into_iter().all(f) => {
                Some(VectorCaps { lanes_f32: 4, fma: f("has_avx") && f("has_fma") })
            }
            Arch::X86_64 => None,
            Arch::Aarch64 => Some(VectorCaps { lanes_f32: 4, fma: true }),
            Arch::Riscv64 if f("has_v") => Some(VectorCaps { lanes_f32: 4, fma: true }),
            Arch::Riscv64 => None,
        }
    }

    /// The optional instruction families this target has.
    pub fn features(&self) -> BTreeSet<Feature> {
        let f = |n| self.flag(n);
        let mut set = BTreeSet::new();
        match self.arch {
            Arch::Aarch64 => {
                set.extend(f("has_dotprod").then_some(Feature::DotProd));
                set.extend(f("has_i8mm").then_some(Feature::I8mm));
            }
            Arch::X86_64 => {
                let vnni = (f("has_avx") && f("has_avx_vnni")) || (f("has_avx512vl") && f("has_avx512vnni"));
                set.extend(vnni.then_some(Feature::Vnni));
            }
            Arch::Riscv64 => {}
        }
        set
    }

    /// The qemu-user arguments selecting a CPU that has this target's features and, where
    /// qemu models one, no more (so tests catch instructions the target lacks): `-cpu
    /// cortex-a53` for baseline aarch64, `-cpu max` for other aarch64 and for x86_64 (emulated
    /// only on non-x86_64 hosts), `-cpu rv64,v=true,vlen=N,vext_spec=v1.0` for riscv64 with V,
    /// nothing for scalar riscv64.
    pub fn qemu_args(&self) -> Vec<String> {
        let cpu = match self.arch {
            Arch::X86_64 => "max".to_string(),
            Arch::Aarch64 if self.settings.is_empty() => "cortex-a53".to_string(),
            Arch::Aarch64 => "max".to_string(),
            Arch::Riscv64 if self.flag("has_v") => {
                let zvl = |bits: &u32| self.flag(&format!("has_zvl{bits}b"));
                let vlen = (8..=16).map(|e| 1u32 << e).filter(zvl).max().unwrap_or(128).max(128);
                format!("rv64,v=true,vlen={vlen},vext_spec=v1.0")
            }
            Arch::Riscv64 => return Vec::new(),
        };
        vec!["-cpu".to_string(), cpu]
    }

    /// The command prefix that runs a harness binary for this target on this host: `None`
    /// when it runs natively, else qemu-user with [`Target::qemu_args`].
    pub fn runner(&self) -> Option<Vec<String>> {
        if Arch::host() == Some(self.arch) {
            return None;
        }
        Some(std::iter::once(self.arch.qemu().program.to_string()).chain(self.qemu_args()).collect())
    }

    /// Flags for [`Arch::c_compiler`] when linking a harness: `-static` when the harness runs
    /// under qemu (no target sysroot is needed at run time), nothing natively.
    pub fn cc_flags(&self) -> Vec<&'static str> {
        if Arch::host() == Some(self.arch) { Vec::new() } else { vec!["-static"] }
    }

    /// Builds the Cranelift ISA: `opt_level=speed`, `is_pic=true`, Cranelift's other shared
    /// defaults (the verifier stays on), and this target's ISA settings.
    pub fn isa(&self) -> Result<OwnedTargetIsa, Error> {
        let mut builder = isa_builder(self.arch)?;
        for (name, value) in &self.settings {
            set(self.arch, &mut builder, name, Some(value))?;
        }
        finish(self.arch, &builder)
    }

    /// A stable string naming the architecture and every non-default ISA setting, sorted:
    /// `x86_64:has_avx=true,...`. Two specs for the same flags give the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let settings: Vec<String> = self.settings.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{}:{}", self.arch, settings.join(","))
    }
}

/// The code that computes the matrix products' register tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Microkernel {
    /// Cranelift CLIF (`F32X4` vectors, or scalars): every target; the portable fallback.
    Cranelift,
    /// An assembled x86_64 AVX2 + FMA kernel on 256-bit `ymm` registers (16 of them).
    Avx2,
    /// An assembled x86_64 AVX-512F kernel on 512-bit `zmm` registers (32 of them), with
    /// embedded-broadcast FMAs and mask registers for the column edge.
    Avx512,
}

impl Microkernel {
    /// Every microkernel, portable first.
    pub const ALL: [Microkernel; 3] = [Microkernel::Cranelift, Microkernel::Avx2, Microkernel::Avx512];

    /// Its name in a schedule's text form (`cranelift`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Microkernel::Cranelift => "cranelift",
            Microkernel::Avx2 => "avx2",
            Microkernel::Avx512 => "avx512",
        }
    }

    /// f32 lanes of its vectors.
    pub fn lanes(self) -> usize {
        match self {
            Microkernel::Cranelift => 4,
            Microkernel::Avx2 => 8,
            Microkernel::Avx512 => 16,
        }
    }
}

impl fmt::Display for Microkernel {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The matrix-product kernels' schedule (plain data: a target default, or a tuned value): which
/// [`Microkernel`] computes the register tiles, the tile of `mr` rows × `nr` columns of the
/// output held in registers, and `kc`, the block of K one pass over a tile accumulates (0:
/// all of K at once). Every valid schedule computes the same result; only speed differs.
///
/// Text form (`Display`/`FromStr`): `MRxNR` for the Cranelift kernel (`4x8`), and
/// `KERNEL:MRxNR[xKC]` for the assembled ones (`avx512:12x32x256`, `avx2:6x16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Schedule {
    /// The microkernel.
    pub kernel: Microkernel,
    /// Output rows per register tile.
    pub mr: usize,
    /// Output columns per register tile.
    pub nr: usize,
    /// Elements of K per block (0: unblocked; the Cranelift kernel is always unblocked).
    pub kc: usize,
}

impl Schedule {
    /// A Cranelift register tile of `mr` × `nr`.
    pub fn cranelift(mr: usize, nr: usize) -> Schedule {
        Schedule { kernel: Microkernel::Cranelift, mr, nr, kc: 0 }
    }

    /// Checks the tile against the microkernel's registers. Cranelift: `mr` in 1..=8, `nr` in
    /// {4, 8, 12, 16}, `kc` 0. AVX2: `nr` a multiple of 8 up to 32 and `mr·nr/8 + nr/8 + 2 ≤
    /// 16` (accumulators, B vectors, the A broadcast and the edge mask). AVX-512: `nr` a
    /// multiple of 16 up to 64, `mr` ≤ 15 (three A base registers of five rows each) and
    /// `mr·nr/16 + nr/16 ≤ 32`. For both, `kc` 0 or at least 4.
    pub fn validate(self) -> Result<Schedule, Error> {
        let err = |what: String| Err(Error::BadSchedule { schedule: self.to_string(), what });
        match self.kernel {
            Microkernel::Cranelift => {
                if !(1..=8).contains(&self.mr) {
                    return err(format!("mr={} must be 1 to 8 rows", self.mr));
                }
                if !matches!(self.nr, 4 | 8 | 12 | 16) {
                    return err(format!("nr={} must be 4, 8, 12 or 16 columns", self.nr));
                }
                if self.kc != 0 {
                    return err("the Cranelift kernel does not block K (kc must be 0)".into());
                }
            }
            k @ (Microkernel::Avx2 | Microkernel::Avx512) => {
                let (w, regs, spare, max_mr) = if k == Microkernel::Avx2 { (8, 16, 2, 16) } else { (16, 32, 0, 15) };
                if self.nr == 0 || !self.nr.is_multiple_of(w) || self.nr > 4 * w {
                    return err(format!("nr={} must be a multiple of {w} up to {}", self.nr, 4 * w));
                }
                let nv = self.nr / w;
                if !(1..=max_mr).contains(&self.mr) || self.mr * nv + nv + spare > regs {
                    return err(format!(
                        "mr={} does not fit: {} accumulators + {nv} B vectors{} exceed {regs} registers",
                        self.mr,
                        self.mr * nv,
                        if spare > 0 { " + broadcast + mask" } else { "" }
                    ));
                }
                if self.kc != 0 && self.kc < 4 {
                    return err(format!("kc={} must be 0 (all of K) or at least 4", self.kc));
                }
            }
        }
        Ok(self)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.kernel != Microkernel::Cranelift {
            write!(f, "{}:", self.kernel)?;
        }
        write!(f, "{}x{}", self.mr, self.nr)?;
        if self.kc != 0 {
            write!(f, "x{}", self.kc)?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = Error;

    /// Parses and validates `[KERNEL:]MRxNR[xKC]` (no kernel: Cranelift).
    fn from_str(s: &str) -> Result<Schedule, Error> {
        let bad = |what: String| Error::BadSchedule { schedule: s.to_string(), what };
        let (kernel, tile) = match s.split_once(':') {
            Some((k, t)) => {
                let kernel = Microkernel::ALL.into_iter().find(|m| m.name() == k.trim()).ok_or_else(|| {
                    let names: Vec<&str> = Microkernel::ALL.iter().map(|m| m.name()).collect();
                    bad(format!("unknown microkernel `{k}` (expected one of {})", names.join(", ")))
                })?;
                (kernel, t)
            }
            None => (Microkernel::Cranelift, s),
        };
        let num = |v: &str| v.trim().parse::<usize>().map_err(|_| bad(format!("`{v}` is not a number")));
        let parts: Vec<&str> = tile.split('x').collect();
        let (mr, nr, kc) = match parts.as_slice() {
            [mr, nr] => (num(mr)?, num(nr)?, 0),
            [mr, nr, kc] => (num(mr)?, num(nr)?, num(kc)?),
            _ => return Err(bad("expected [KERNEL:]MRxNR[xKC], e.g. 4x8 or avx512:12x32x256".into())),
        };
        Schedule { kernel, mr, nr, kc }.validate()
    }
}

impl Target {
    /// The microkernels this target's CPU can run, portable first: Cranelift always; AVX2 on
    /// x86_64 with `has_avx`, `has_avx2` and `has_fma`; AVX-512 with `has_avx512f` as well.
    pub fn microkernels(&self) -> Vec<Microkernel> {
        let f = |n| self.flag(n);
        let mut v = vec![Microkernel::Cranelift];
        if self.arch == Arch::X86_64 && f("has_avx") && f("has_avx2") && f("has_fma") {
            v.push(Microkernel::Avx2);
            if f("has_avx512f") {
                v.push(Microkernel::Avx512);
            }
        }
        v
    }

    /// This target's default matrix-product schedule, on its best microkernel: AVX-512
    /// `12x32` (24 accumulators), AVX2 `6x16` (12 accumulators), both over all of K at once
    /// (K blocks of 256 or 512 measured 3–10 % slower on the MiniLM-class encoder and the
    /// Llama-class decoder here: the panels stay in L2 and C is written once), else Cranelift
    /// `4x8` (8 vector accumulators, which with the B loads and A splats fit the 16 vector
    /// registers of x86_64; aarch64 and RVV have 32, where 8 × 8 fits, left to the tuner).
    pub fn schedule(&self) -> Schedule {
        Schedule::default_for(self.microkernels().last().copied().unwrap_or(Microkernel::Cranelift))
    }
}

impl Schedule {
    /// The default schedule of `kernel` (see [`Target::schedule`]).
    pub fn default_for(kernel: Microkernel) -> Schedule {
        match kernel {
            Microkernel::Cranelift => Schedule::cranelift(4, 8),
            Microkernel::Avx2 => Schedule { kernel, mr: 6, nr: 16, kc: 0 },
            Microkernel::Avx512 => Schedule { kernel, mr: 12, nr: 32, kc: 0 },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Target, Error> {
        Target::from_spec(s)
    }
}

fn isa_builder(arch: Arch) -> Result<isa::Builder, Error> {
    isa::lookup_by_name(arch.triple()).map_err(|e| Error::Isa { arch, message: e.to_string() })
}

fn finish(arch: Arch, builder: &isa::Builder) -> Result<OwnedTargetIsa, Error> {
    let mut shared = settings::builder();
    shared.set("opt_level", "speed").expect("opt_level is a Cranelift setting");
    shared.set("is_pic", "true").expect("is_pic is a Cranelift setting");
    builder.finish(settings::Flags::new(shared)).map_err(|e| Error::Isa { arch, message: e.to_string() })
}

/// Every ISA flag of `arch` after applying `items` (`name` or `name=value`) to the defaults.
fn flag_map(arch: Arch, items: &[&str]) -> Result<BTreeMap<String, String>, Error> {
    let mut builder = isa_builder(arch)?;
    for item in items {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (*item, None),
        };
        set(arch, &mut builder, name, value)?;
    }
    let isa: &dyn TargetIsa = &*finish(arch, &builder)?;
    Ok(isa.isa_flags().iter().map(|v| (v.name.to_string(), v.value_string())).collect())
}

/// The entries of `flags` whose value differs from `base`.
fn changed(base: &BTreeMap<String, String>, flags: &BTreeMap<String, String>) -> Vec<(String, String)> {
    flags.iter().filter(|(n, v)| base.get(*n) != Some(v)).map(|(n, v)| (n.clone(), v.clone())).collect()
}

/// Sets `name` to `value`, or enables it (a bool or a Cranelift preset) when `value` is `None`.
fn set(arch: Arch, builder: &mut isa::Builder, name: &str, value: Option<&str>) -> Result<(), Error> {
    let kinds: BTreeMap<&str, SettingKind> = builder.iter().map(|s| (s.name, s.kind)).collect();
    let bad_value = |reason: String| Error::BadValue {
        arch,
        name: name.to_string(),
        value: value.unwrap_or("").to_string(),
        reason,
    };
    match (kinds.get(name), value) {
        (None, _) => {
            let names = |preset: bool| {
                let names: Vec<&str> =
                    kinds.iter().filter(|(_, k)| (**k == SettingKind::Preset) == preset).map(|(n, _)| *n).collect();
                names.join(", ")
            };
            return Err(Error::UnknownSetting {
                arch,
                name: name.to_string(),
                settings: names(false),
                presets: names(true),
            });
        }
        (Some(SettingKind::Preset), Some(_)) => {
            return Err(bad_value("a Cranelift preset takes no value; write its name alone".into()));
        }
        _ => {}
    }
    let result = match value {
        Some(v) => builder.set(name, v),
        None => builder.enable(name),
    };
    result.map_err(|e| match e {
        SetError::BadValue(expected) => bad_value(format!("expected {expected}")),
        SetError::BadType => bad_value("this setting needs name=value".into()),
        SetError::BadName(n) => bad_value(format!("Cranelift rejected the name '{n}'")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_presets() -> Vec<Target> {
        presets().map(|(name, _)| Target::from_spec(name).unwrap()).collect()
    }

    #[test]
    fn every_preset_builds_an_isa_with_its_settings() {
        for t in all_presets() {
            assert_eq!(t.name(), t.spec_string());
            let isa = t.isa().unwrap();
            assert_eq!(isa.triple().to_string(), t.arch().triple(), "{t}");
            let expected_isa = match t.arch() {
                Arch::X86_64 => "x64",
                Arch::Aarch64 => "aarch64",
                Arch::Riscv64 => "riscv64",
            };
            assert_eq!(isa.name(), expected_isa);
            assert_eq!(isa.pointer_bytes() as u32, t.arch().pointer_bytes());
            assert!(isa.flags().is_pic());
            assert_eq!(isa.flags().opt_level(), settings::OptLevel::Speed);
            let flags: BTreeMap<String, String> =
                isa.isa_flags().iter().map(|v| (v.name.to_string(), v.value_string())).collect();
            for (n, v) in t.settings() {
                assert_eq!(flags.get(n), Some(v), "{t}: {n}");
            }
            let mut sorted = t.settings().to_vec();
            sorted.sort();
            assert_eq!(sorted, t.settings());
        }
    }

    #[test]
    fn preset_contents() {
        let x86 = Target::default_for(Arch::X86_64);
        for n in ["has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt"] {
            assert!(x86.flag(n), "{n}");
        }
        assert!(!x86.flag("has_avx") && !x86.flag("has_fma"));
        let v3 = Target::from_spec("x86_64-v3").unwrap();
        for n in ["has_sse42", "has_avx", "has_avx2", "has_fma", "has_bmi1", "has_bmi2", "has_lzcnt"] {
            assert!(v3.flag(n), "{n}");
        }
        let v4 = Target::from_spec("x86_64-v4").unwrap();
        for n in ["has_avx", "has_avx2", "has_fma", "has_avx512f", "has_avx512dq", "has_avx512vl"] {
            assert!(v4.flag(n), "{n}");
        }
        let kernels = |s: &str| Target::from_spec(s).unwrap().microkernels();
        assert_eq!(kernels("x86_64-v4"), [Microkernel::Cranelift, Microkernel::Avx2, Microkernel::Avx512]);
        assert_eq!(kernels("x86_64-v3"), [Microkernel::Cranelift, Microkernel::Avx2]);
        assert_eq!(kernels("x86_64 has_avx has_avx2"), [Microkernel::Cranelift], "AVX2 kernels need FMA");
        assert_eq!(kernels("aarch64-dotprod"), [Microkernel::Cranelift]);
        assert!(Target::default_for(Arch::Aarch64).settings().is_empty());
        assert_eq!(Target::from_spec("aarch64-dotprod").unwrap().settings(), [("has_dotprod".into(), "true".into())]);
        let rv = Target::default_for(Arch::Riscv64);
        assert!(rv.flag("has_zca") && rv.flag("has_zcd") && !rv.flag("has_v"));
        assert!(rv.flag("has_m") && rv.flag("has_f") && rv.flag("has_d"), "Cranelift defaults count");
        assert!(!rv.settings().iter().any(|(n, _)| n == "has_m"));
        let rvv = Target::from_spec("riscv64-v").unwrap();
        assert!(rvv.flag("has_v") && rvv.flag("has_zvl128b") && !rvv.flag("has_zvl256b"));
    }

    #[test]
    fn vector_caps_and_features() {
        let caps = |s: &str| Target::from_spec(s).unwrap().vector();
        assert_eq!(caps("riscv64"), None);
        assert_eq!(caps("riscv64-v"), Some(VectorCaps { lanes_f32: 4, fma: true }));
        assert_eq!(caps("x86_64"), Some(VectorCaps { lanes_f32: 4, fma: false }));
        assert_eq!(caps("x86_64-v3"), Some(VectorCaps { lanes_f32: 4, fma: true }));
        assert_eq!(caps("x86_64 has_fma"), Some(VectorCaps { lanes_f32: 4, fma: false }), "fma needs avx too");
        assert_eq!(caps("x86_64 has_sse42=false"), None);
        assert_eq!(caps("aarch64"), Some(VectorCaps { lanes_f32: 4, fma: true }));
        let features = |s: &str| Target::from_spec(s).unwrap().features().into_iter().collect::<Vec<_>>();
        assert_eq!(features("aarch64"), []);
        assert_eq!(features("aarch64-dotprod"), [Feature::DotProd]);
        assert_eq!(features("aarch64-dotprod has_i8mm"), [Feature::DotProd, Feature::I8mm]);
        assert_eq!(features("x86_64-v3"), []);
        assert_eq!(features("x86_64-v3 has_avx_vnni"), [Feature::Vnni]);
        assert_eq!(features("x86_64 has_avx_vnni"), [], "AVX-VNNI needs has_avx");
    }

    #[test]
    fn specs_resolve_to_presets_or_canonical_names() {
        assert_eq!(Target::from_spec("riscv64 has_v zvl128b").unwrap(), Target::from_spec("riscv64-v").unwrap());
        let v3 = "x86_64 has_avx has_avx2 has_fma has_bmi1 has_bmi2 has_lzcnt";
        assert_eq!(Target::from_spec(v3).unwrap().name(), "x86_64-v3");
        let t = Target::from_spec("  x86_64   has_fma has_avx ").unwrap();
        assert_eq!(t.name(), "x86_64 has_avx has_fma");
        assert_eq!(t.fingerprint(), Target::from_spec("x86_64 has_avx=true has_fma=on").unwrap().fingerprint());
        let off = Target::from_spec("x86_64-v3 has_avx=false").unwrap();
        assert_eq!(off.name(), "x86_64 has_avx2 has_bmi1 has_bmi2 has_fma has_lzcnt");
        assert_eq!(Target::from_spec("riscv64 has_zcd=false").unwrap().name(), "riscv64 has_zcd=false");
        let wide = Target::from_spec("riscv64-v zvl256b").unwrap();
        assert_eq!(wide.qemu_args(), ["-cpu", "rv64,v=true,vlen=256,vext_spec=v1.0"]);
        let custom = ["riscv64 has_v", "aarch64 has_i8mm has_lse", "x86_64 has_popcnt=false", "riscv64-v zvl256b"];
        for t in all_presets().into_iter().chain(custom.iter().map(|s| s.parse().unwrap())) {
            let back = Target::from_spec(&t.spec_string()).unwrap();
            assert_eq!(back, t);
            assert_eq!(back.to_string(), t.spec_string());
        }
    }

    #[test]
    fn bad_specs_name_the_bad_part() {
        let err = |s: &str| Target::from_spec(s).unwrap_err();
        let e = err("sparc64 has_v");
        assert!(matches!(e, Error::UnknownTarget { .. }));
        assert!(e.to_string().contains("'sparc64 has_v'") && e.to_string().contains("riscv64-v"), "{e}");
        assert!(matches!(err(""), Error::UnknownTarget { .. }));
        let e = err("riscv64 has_vv").to_string();
        assert!(e.contains("'has_vv'") && e.contains("has_v,") && e.contains("zvl128b"), "{e}");
        let e = err("x86_64 has_avx=maybe").to_string();
        assert!(e.contains("'maybe'") && e.contains("'has_avx'") && e.contains("bool"), "{e}");
        let e = err("riscv64 zvl128b=true").to_string();
        assert!(e.contains("'zvl128b'") && e.contains("preset"), "{e}");
        assert!(matches!(err("aarch64 has_avx"), Error::UnknownSetting { arch: Arch::Aarch64, .. }));
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let prints: BTreeSet<String> = all_presets().iter().map(Target::fingerprint).collect();
        assert_eq!(prints.len(), PRESETS.len());
        assert_eq!(Target::from_spec("aarch64-dotprod").unwrap().fingerprint(), "aarch64:has_dotprod=true");
        assert_eq!(Target::default_for(Arch::Aarch64).fingerprint(), "aarch64:");
        assert_eq!(
            Target::default_for(Arch::X86_64).fingerprint(),
            "x86_64:has_cmpxchg16b=true,has_popcnt=true,has_sse3=true,has_sse41=true,has_sse42=true,has_ssse3=true"
        );
    }

    #[test]
    fn tools_and_runners() {
        let qemu = |s: &str| Target::from_spec(s).unwrap().qemu_args();
        assert_eq!(qemu("aarch64"), ["-cpu", "cortex-a53"]);
        assert_eq!(qemu("aarch64-dotprod"), ["-cpu", "max"]);
        assert_eq!(qemu("riscv64-v"), ["-cpu", "rv64,v=true,vlen=128,vext_spec=v1.0"]);
        assert!(qemu("riscv64").is_empty());
        assert_eq!(Arch::Riscv64.qemu(), Tool { program: "qemu-riscv64", package: "qemu-user" });
        for arch in Arch::ALL {
            let t = Target::default_for(arch);
            let native = Arch::host() == Some(arch);
            assert_eq!(t.runner().is_none(), native);
            assert_eq!(t.cc_flags().is_empty(), native);
            assert_eq!(arch.c_compiler().program == "gcc", native);
        }
        if Arch::host() == Some(Arch::X86_64) {
            assert_eq!(
                Arch::Aarch64.c_compiler(),
                Tool { program: "aarch64-linux-gnu-gcc", package: "gcc-aarch64-linux-gnu" }
            );
            assert_eq!(Target::from_spec("riscv64-v").unwrap().runner().unwrap()[0], "qemu-riscv64");
        }
    }

    #[test]
    fn host_target_matches_this_machine() {
        let host = Target::host().unwrap();
        assert_eq!(Some(host.arch()), Arch::host());
        #[cfg(target_arch = "x86_64")]
        {
            let v3 = host.name() == "x86_64-v3" || host.name() == "x86_64-v4";
            assert_eq!(host.vector().unwrap().fma, std::is_x86_feature_detected!("fma") && v3);
            let avx512 = std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512vl");
            assert_eq!(host.name() == "x86_64-v4", v3 && avx512);
        }
        assert!(host.host_lacks().is_empty(), "{:?}", host.host_lacks());
        host.isa().unwrap();
    }
}
