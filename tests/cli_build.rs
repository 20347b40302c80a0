//! `slmtvm build` and `slmtvm run --target ARCH` through the binary: the files it writes,
//! byte-identical rebuilds from other folders and with every core busy, NEON code in the aarch64 object, runs under
//! qemu-user matching ONNX Runtime, and clear errors for bad targets and missing tools.

use slmtvm_frontend::npy::read_npy;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn slmtvm_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmtvm")).current_dir(cwd).args(args).output().unwrap()
}

fn slmtvm(args: &[&str]) -> Output {
    slmtvm_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models").join(name)
}

fn fresh(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slmtvm-build-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn have(program: &str) -> bool {
    slmtvm_targets::toolchain::which(program).is_some()
}

#[test]
fn build_writes_object_header_and_manifest() {
    let out = fresh("files");
    let m = model("bert_tiny").join("model.onnx");
    ok(&slmtvm(&["build", m.to_str().unwrap(), "--target", "aarch64", "-o", out.to_str().unwrap()]));
    let obj = std::fs::read(out.join("model.o")).unwrap();
    assert_eq!(&obj[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([obj[18], obj[19]]), 183, "e_machine is EM_AARCH64");
    assert_eq!(u16::from_le_bytes([obj[16], obj[17]]), 1, "e_type is ET_REL (relocatable)");
    {
        use object::{Object, ObjectSection, ObjectSymbol, SectionFlags};
        let f = object::File::parse(obj.as_slice()).unwrap();
        // Weights in .rodata aligned for any vector load; no writable data (no mutable globals).
        let rodata = f.section_by_name(".rodata").expect("a .rodata section");
        assert!(rodata.align() >= 64 && rodata.size() > 90_000, "{} bytes aligned {}", rodata.size(), rodata.align());
        for s in f.sections() {
            const SHF_WRITE: u64 = 1;
            if let SectionFlags::Elf { sh_flags } = s.flags() {
                assert!(sh_flags & SHF_WRITE == 0, "writable section {:?}", s.name());
            }
        }
        // Exactly the two entry points are exported; nothing is imported.
        let mut globals: Vec<&str> =
            f.symbols().filter(|s| s.is_global() && s.is_definition()).map(|s| s.name().unwrap()).collect();
        globals.sort();
        assert_eq!(globals, ["model_run", "model_workspace_size"]);
        assert!(
            f.symbols().all(|s| !s.is_undefined() || s.name().unwrap_or("").is_empty()),
            "the object imports a symbol"
        );
    }
    let h = std::fs::read_to_string(out.join("model.h")).unwrap();
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert!(h.contains("int model_run(const void* const* inputs, void* const* outputs, void* workspace);"), "{h}");
    assert!(h.contains("size_t model_workspace_size(void);"));
    let ws = j["arena_bytes"].as_u64().unwrap();
    assert!(h.contains(&format!("#define MODEL_WORKSPACE_SIZE {ws} ")), "{h}");
    assert!(
        h.contains("#define MODEL_INPUT_0_NAME \"input_ids\"") && h.contains("#define MODEL_INPUT_0_SHAPE {2, 16}")
    );
    assert!(h.contains("#define MODEL_OUTPUT_0_BYTES 4096"), "2x16x32 f32");
    assert!(h.contains("Usage"), "the header carries a usage example");
    assert_eq!(j["target"], "aarch64");
    assert_eq!(j["outputs"][0]["shape"], serde_json::json!([2, 16, 32]));
    assert_eq!(j["arena_align"], 64);
    assert!(j["arena_lower_bound"].as_u64().unwrap() <= ws);
    assert!(
        ws as f64 <= 1.15 * j["arena_lower_bound"].as_u64().unwrap() as f64,
        "planned arena within 1.15x the lower bound"
    );
    let wb = j["weights_bytes"].as_u64().unwrap();
    let file = std::fs::metadata(&m).unwrap().len();
    assert!(wb > file / 2 && wb < file, "weights {wb} of a {file}-byte model");
    let sha = j["model_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    // bert_tiny's projections: MatMul + bias fused into Dense by the optimizer.
    assert!(j["kernel_list"].as_array().unwrap().iter().any(|k| k["op"] == "Dense"));
    assert!(j["compiler"].as_str().unwrap().starts_with("slmtvm "));
}

#[test]
fn builds_are_byte_identical_from_other_folders() {
    let m = model("llama_tiny").join("model.onnx");
    for target in ["x86_64", "aarch64", "riscv64"] {
        let (a, b) = (fresh(&format!("repro-a-{target}")), fresh(&format!("repro-b-{target}")));
        let cpu = if target == "riscv64" { "riscv64-v" } else { target };
        // One absolute output path from the repository; one relative path from another folder.
        ok(&slmtvm(&[
            "build",
            m.to_str().unwrap(),
            "--target",
            target,
            "--cpu",
            cpu,
            "-o",
            a.join("x/out").to_str().unwrap(),
        ]));
        ok(&slmtvm_in(&b, &["build", m.to_str().unwrap(), "--target", target, "--cpu", cpu, "-o", "elsewhere"]));
        for f in ["model.o", "model.h", "model.json"] {
            let (x, y) =
                (std::fs::read(a.join("x/out").join(f)).unwrap(), std::fs::read(b.join("elsewhere").join(f)).unwrap());
            assert!(x == y, "{target}: {f} differs between builds");
            let text = String::from_utf8_lossy(&x);
            assert!(!text.contains(a.to_str().unwrap()) && !text.contains("elsewhere"), "{target}: {f} names a path");
        }
    }
}

/// The MiniLM-class encoder (`.cache/minilm`, written by the test set-up) built twice for
/// aarch64, the second time with every core kept busy by spinning threads: the object, header
/// and manifest are byte-identical (the optimizer stops at deterministic limits only; its time
/// limit is a guard that fails the build, see `slmtvm_optimizer::Options::time_limit`).
#[test]
fn minilm_builds_are_byte_identical_with_every_core_busy() {
    let m = slmtvm_tests::cached_model_path("minilm");
    let build = |tag: &str| {
        let out = fresh(tag);
        let o =
            slmtvm(&["build", m.to_str().unwrap(), "--target", "aarch64", "--explain", "-o", out.to_str().unwrap()]);
        let report = ok(&o);
        assert!(report.contains("stop: saturated"), "{tag}: {report}");
        out
    };
    let quiet = build("hog-quiet");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let hogs: Vec<_> = (0..cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let busy = build("hog-busy");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    for f in ["model.o", "model.h", "model.json"] {
        let (a, b) = (std::fs::read(quiet.join(f)).unwrap(), std::fs::read(busy.join(f)).unwrap());
        assert!(a == b, "{f} differs between a quiet build and one with {cores} cores busy");
    }
}

#[test]
fn aarch64_object_has_neon_fma_in_matmul_and_vector_elementwise_kernels() {
    if !have("aarch64-linux-gnu-objdump") {
        eprintln!("skipped: aarch64-linux-gnu-objdump missing (apt-get install -y binutils-aarch64-linux-gnu)");
        return;
    }
    let out = fresh("neon");
    ok(&slmtvm(&[
        "build",
        model("bert_tiny").join("model.onnx").to_str().unwrap(),
        "--target",
        "aarch64",
        "-o",
        out.to_str().unwrap(),
    ]));
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    let dis = Command::new("aarch64-linux-gnu-objdump").arg("-d").arg(out.join("model.o")).output().unwrap();
    let dis = String::from_utf8_lossy(&dis.stdout);
    // Split the disassembly by function label: "<model_k12>:".
    let body = |sym: &str| -> String {
        let start = dis.find(&format!("<{sym}>:")).unwrap_or_else(|| panic!("no {sym} in the disassembly"));
        let rest = &dis[start..];
        let end = rest[1..].find("\n\n").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let kernels = j["kernel_list"].as_array().unwrap();
    let of = |op: &str| {
        kernels.iter().filter(|k| k["op"] == op).map(|k| k["symbol"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let mut matmuls = of("MatMul");
    matmuls.extend(of("Gemm"));
    matmuls.extend(of("Dense"));
    matmuls.extend(of("FusedMlp"));
    assert!(!matmuls.is_empty());
    for s in &matmuls {
        let b = body(s);
        assert!(b.lines().any(|l| l.contains("fmla") && l.contains(".4s")), "{s} (MatMul) has no fmla v.4s:\n{b}");
    }
    let elementwise: Vec<(&str, String)> =
        ["Add", "Mul"].into_iter().flat_map(|op| of(op).into_iter().map(move |s| (op, s))).collect();
    assert!(!elementwise.is_empty(), "no Add or Mul kernel in bert_tiny to check");
    for (op, s) in &elementwise {
        let b = body(s);
        assert!(
            b.lines().any(|l| (l.contains("fadd") || l.contains("fmul")) && l.contains(".4s")),
            "{s} ({op}) is not vectorized:\n{b}"
        );
    }
}

#[test]
fn run_on_each_target_matches_onnx_runtime() {
    let dir = model("bert_tiny");
    for (target, cpu) in [("x86_64", None), ("aarch64", None), ("riscv64", Some("riscv64-v"))] {
        // Natively or under qemu-user, as this machine can (a skip prints why).
        if slmtvm_tests::cross::runnable(cpu.unwrap_or(target)).is_none() {
            continue;
        }
        let out = fresh(&format!("run-{target}"));
        let (m, inputs) = (dir.join("model.onnx"), dir.join("inputs"));
        let mut args = vec!["run", m.to_str().unwrap(), "--target", target];
        if let Some(c) = cpu {
            args.extend(["--cpu", c]);
        }
        args.extend(["--input-dir", inputs.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        let text = ok(&slmtvm(&args));
        assert!(text.contains("last_hidden_state: f32[2, 16, 32] ->"), "{text}");
        let got = read_npy(&out.join("last_hidden_state.npy")).unwrap();
        let want = read_npy(&dir.join("expected/last_hidden_state.npy")).unwrap();
        slmtvm_tests::close_to(&want, &got, 1e-4).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert!(out.join("build/model.o").is_file() && out.join("build/model.run").is_file());
    }
}

#[test]
fn bad_targets_and_missing_tools_are_one_clear_error() {
    let m = model("bert_tiny").join("model.onnx");
    let m = m.to_str().unwrap();
    let out = fresh("bad");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["build", m, "--target", "sparc64", "-o", o], "unknown target 'sparc64'"),
        (
            vec!["build", m, "--target", "x86_64", "--cpu", "aarch64-dotprod", "-o", o],
            "is a aarch64 preset, not x86_64",
        ),
        (vec!["build", m, "--target", "riscv64", "--cpu", "riscv64 has_vv", "-o", o], "unknown setting 'has_vv'"),
        (vec!["build", m, "--target", "aarch64", "--name", "Bad-Name", "-o", o], "not a plain lower-case C identifier"),
        (vec!["run", m, "--cpu", "aarch64", "--random-inputs", "1", "-o", o], "--cpu needs a compiled --target"),
    ];
    for (args, want) in cases {
        let r = slmtvm(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected '{want}' in {err}");
    }
    // Symbolic dims need a bound (or a fixed size) for code generation.
    let dynm = model("bert_tiny_dynamic").join("model.onnx");
    let r = slmtvm(&["build", dynm.to_str().unwrap(), "--target", "aarch64", "-o", o]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("has no upper bound") && err.contains("--bound batch=N") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    // No cross compiler on PATH: the error names the Debian package (riscv64: foreign on every
    // host these tests run on).
    let r = Command::new(env!("CARGO_BIN_EXE_slmtvm"))
        .env("PATH", "")
        .args(["run", m, "--target", "riscv64", "--random-inputs", "1", "-o", o])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("apt-get install -y gcc-riscv64-linux-gnu"), "{err}");
    assert!(std::fs::read_dir(&out).unwrap().next().is_none(), "nothing written on errors");
    let fixed = fresh("fixed");
    let shapes = ["--shape", "input_ids=1x7", "--shape", "attention_mask=1x7", "--shape", "token_type_ids=1x7"];
    let mut args = vec!["build", dynm.to_str().unwrap(), "--target", "aarch64", "-o", fixed.to_str().unwrap()];
    args.extend(shapes);
    ok(&slmtvm(&args));
    let h = std::fs::read_to_string(fixed.join("model.h")).unwrap();
    assert!(h.contains("#define MODEL_INPUT_0_SHAPE {1, 7}"), "{h}");
}

#[test]
fn schedule_flag_sets_the_register_tile_and_bad_ones_are_refused() {
    // The manifest records the tile used; another tile gives other code and the same outputs.
    let m = model("bert_tiny").join("model.onnx");
    let (a, b) = (fresh("sched-default"), fresh("sched-6x16"));
    ok(&slmtvm(&["build", m.to_str().unwrap(), "--target", "x86_64", "-o", a.to_str().unwrap()]));
    ok(&slmtvm(&["build", m.to_str().unwrap(), "--target", "x86_64", "--schedule", "6x16", "-o", b.to_str().unwrap()]));
    let man = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("model.json")).unwrap()).unwrap()
    };
    assert_eq!((man(&a)["schedule"].as_str(), man(&b)["schedule"].as_str()), (Some("4x8"), Some("6x16")));
    assert_ne!(std::fs::read(a.join("model.o")).unwrap(), std::fs::read(b.join("model.o")).unwrap());
    // Both run (natively): ONNX Runtime's outputs, and the same bits from either tile (the K
    // order of every sum is the tile's rows' and columns' own, so a tile changes no rounding).
    let inputs = model("bert_tiny").join("inputs");
    let run = |sched: &[&str], tag: &str| {
        let out = fresh(tag);
        let mut args = vec!["run", m.to_str().unwrap(), "--target", slmtvm_tests::cross::native_preset()];
        args.extend_from_slice(sched);
        args.extend_from_slice(&["--input-dir", inputs.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        ok(&slmtvm(&args));
        read_npy(&out.join("last_hidden_state.npy")).unwrap()
    };
    let (da, db) = (run(&[], "sched-run-default"), run(&["--schedule", "6x16"], "sched-run-6x16"));
    let want = read_npy(&model("bert_tiny").join("expected/last_hidden_state.npy")).unwrap();
    slmtvm_tests::close_to(&want, &da, 1e-4).unwrap_or_else(|e| panic!("4x8: {e}"));
    slmtvm_tests::compare(&da, &db, 0.0, 0.0).unwrap_or_else(|e| panic!("6x16 against 4x8: {e}"));
    for bad in ["4x6", "0x8", "9x8", "4by8"] {
        let o =
            slmtvm(&["build", m.to_str().unwrap(), "--target", "x86_64", "--schedule", bad, "-o", b.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "--schedule {bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(bad), "--schedule {bad}");
    }
}
