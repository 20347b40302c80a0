//! Linking and running test programs for a target on this host: the C compiler that links
//! for it (host gcc or Debian's cross gcc) and the runner (native, or qemu-user). A missing
//! program is an error that names the Debian package to install.

use crate::{Target, Tool};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Errors of linking and running.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// A program is not installed.
    #[error("'{program}' is not installed: install the Debian package with `apt-get install -y {package}`")]
    Missing {
        /// The program.
        program: String,
        /// Its Debian package.
        package: String,
    },
    /// The C compiler failed.
    #[error("{program} failed: {stderr}")]
    Compile {
        /// The compiler.
        program: String,
        /// Its error output.
        stderr: String,
    },
    /// A program could not be started or waited for.
    #[error("cannot run {program}: {message}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        message: String,
    },
    /// The target runs natively here but this CPU lacks instructions it may use.
    #[error("target {target} runs natively here, but this CPU lacks {missing}")]
    HostCpu {
        /// The target's name.
        target: String,
        /// The missing features, comma-separated.
        missing: String,
    },
    /// A program ran longer than allowed and was killed.
    #[error("{program} did not finish within {seconds} s and was killed")]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        seconds: u64,
    },
}

/// The path of `program` on `PATH`, if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// `tool`'s path, or [`ToolError::Missing`] naming its package.
pub fn require(tool: Tool) -> Result<PathBuf, ToolError> {
    which(tool.program).ok_or_else(|| ToolError::Missing { program: tool.program.into(), package: tool.package.into() })
}

impl Target {
    /// Checks that the C compiler (and, off the host architecture, qemu) for this target are
    /// installed, and that a target run natively uses no instructions this CPU lacks.
    pub fn check_tools(&self) -> Result<(), ToolError> {
        require(self.arch().c_compiler())?;
        if self.runner().is_some() {
            require(self.arch().qemu())?;
        }
        let missing = self.host_lacks();
        if !missing.is_empty() {
            return Err(ToolError::HostCpu { target: self.name().to_string(), missing: missing.join(", ") });
        }
        Ok(())
    }

    /// The instruction-set flags of this target that whatever runs it lacks: natively, those
    /// this CPU lacks (x86_64: AVX, AVX2, FMA and the AVX-512 families; aarch64: the dot
    /// product); under qemu-x86_64, the AVX-512 families (qemu's `-cpu max` emulates AVX2 but no
    /// AVX-512); nothing under the other emulators.
    pub fn host_lacks(&self) -> Vec<&'static str> {
        if self.runner().is_some() {
            const QEMU_X86_LACKS: [&str; 5] =
                ["has_avx512f", "has_avx512dq", "has_avx512vl", "has_avx512vbmi", "has_avx512vnni"];
            return match self.arch() {
                crate::Arch::X86_64 => QEMU_X86_LACKS.into_iter().filter(|f| self.flag(f)).collect(),
                _ => Vec::new(),
            };
        }
        #[cfg(target_arch = "aarch64")]
        {
            let host: [(&str, bool); 1] = [("has_dotprod", std::arch::is_aarch64_feature_detected!("dotprod"))];
            return host.into_iter().filter(|&(flag, have)| self.flag(flag) && !have).map(|(flag, _)| flag).collect();
        }
        #[cfg(target_arch = "x86_64")]
        {
            let host: [(&str, bool); 8] = [
                ("has_avx", std::is_x86_feature_detected!("avx")),
                ("has_avx2", std::is_x86_feature_detected!("avx2")),
                ("has_fma", std::is_x86_feature_detected!("fma")),
                ("has_avx512f", std::is_x86_feature_detected!("avx512f")),
                ("has_avx512dq", std::is_x86_feature_detected!("avx512dq")),
                ("has_avx512vl", std::is_x86_feature_detected!("avx512vl")),
                ("has_avx512vbmi", std::is_x86_feature_detected!("avx512vbmi")),
                ("has_avx512vnni", std::is_x86_feature_detected!("avx512vnni")),
            ];
            host.into_iter().filter(|&(flag, have)| self.flag(flag) && !have).map(|(flag, _)| flag).collect()
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        Vec::new()
    }

    /// Compiles and links C sources and objects `inputs` (with extra compiler `args` before
    /// them) into the executable `exe` with the target's C compiler and [`Target::cc_flags`].
    pub fn link(&self, args: &[&str], inputs: &[&Path], exe: &Path) -> Result<(), ToolError> {
        let cc = require(self.arch().c_compiler())?;
        let program = self.arch().c_compiler().program.to_string();
        let out = Command::new(&cc)
            .args(args)
            .args(inputs)
            .arg("-o")
            .arg(exe)
            .args(self.cc_flags())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ToolError::Spawn { program: program.clone(), message: e.to_string() })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(ToolError::Compile { program, stderr });
        }
        Ok(())
    }

    /// The command that runs executable `exe` for this target: directly, or under qemu-user.
    pub fn command(&self, exe: &Path) -> Result<Command, ToolError> {
        Ok(match self.runner() {
            Some(r) => {
                require(self.arch().qemu())?;
                let mut c = Command::new(&r[0]);
                c.args(&r[1..]).arg(exe);
                c
            }
            None => Command::new(exe),
        })
    }
}

/// Runs `cmd` to completion with no standard input, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, ToolError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_err = |e: std::io::Error| ToolError::Spawn { program: program.clone(), message: e.to_string() };
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_err)?;
    // Read the pipes on threads so a chatty child never blocks on a full pipe.
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut v);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(spawn_err)? {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ToolError::Timeout { program, seconds: timeout.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}
