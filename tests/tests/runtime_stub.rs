//! The C harness of `runtime-stub/` on every target, without the compiler:
//! `runtime-stub/test/run_tests.sh` builds it with hand-written model objects natively and for
//! aarch64/riscv64 (run under qemu-user) and checks its outputs, status codes and error paths.

use slmtvm_tests::repo_root;
use std::process::Command;

#[test]
fn harness_passes_its_tests_on_every_target() {
    let o = Command::new("bash").arg(repo_root().join("runtime-stub/test/run_tests.sh")).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let summary = out.lines().rev().find(|l| l.starts_with("harness: ")).unwrap_or("");
    eprintln!("{summary}");
    assert!(o.status.success(), "{out}\n{err}");
    assert!(summary.ends_with(" 0 failed") && !summary.starts_with("harness: 0 passed"), "{summary}");
    assert!(!out.contains("is not installed"), "a target was skipped (its cross compiler or qemu is missing):\n{out}");
}
