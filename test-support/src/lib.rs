//! Helpers shared by the workspace's integration tests: where the real
//! published models are cached (scripts/models.sh), temporary directories,
//! running programs, and building C programs against a libnpu that the
//! Makefile's own rules installed into a prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The top of the repository.
pub fn repo_top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository holds test-support/")
        .to_path_buf()
}

/// Where scripts/models.sh keeps the published models: `$NPU_MODELS_DIR`,
/// else `models/` in the stack's cache (`$NPU_CACHE`, default
/// `${XDG_CACHE_HOME:-~/.cache}/npu-stack`).
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NPU_MODELS_DIR") {
        return d.into();
    }
    std::env::var_os("NPU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("npu-stack")
        })
        .join("models")
}

/// The model at `rel` under [`models_dir`]; a missing one fails the test.
pub fn model_path(rel: &str) -> PathBuf {
    let p = models_dir().join(rel);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/models.sh (make test does, through scripts/host-deps.sh)",
        p.display()
    );
    p
}

/// A fresh directory of this test process's own, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `npu-test-<name>-<pid>` in the system's temporary directory, empty.
    pub fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("npu-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a program ended and what it printed.
pub struct Ran {
    /// The exit status (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `cmd` to its end.
pub fn run(cmd: &mut Command) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Run `cmd`, which must succeed (`what` names it in the failure).
pub fn checked(what: &str, cmd: &mut Command) -> Ran {
    let r = run(cmd);
    assert!(
        r.code == 0,
        "{what} failed (status {}):\n{}",
        r.code,
        r.text()
    );
    r
}

/// The Makefile's install `targets` (install-libnpu, install-libnpu-onnx)
/// into `prefix` as a user runs them, libnpu with the device model. Each
/// build keeps its own target directory under target/ (see
/// LIBNPU_TARGET_DIR in the Makefile), shared by every test that installs.
pub fn make_install(prefix: &Path, targets: &[&str]) {
    let top = repo_top();
    checked(
        &format!("make {}", targets.join(" ")),
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&top)
            .args(targets)
            .arg(format!("PREFIX={}", prefix.display()))
            .arg("NPU_FEATURES=model")
            .arg(format!(
                "LIBNPU_TARGET_DIR={}",
                top.join("target/install-libnpu").display()
            ))
            .arg(format!(
                "LIBNPU_ONNX_TARGET_DIR={}",
                top.join("target/install-libnpu-onnx").display()
            ))
            .arg(format!("CARGO={}", env!("CARGO"))),
    );
}

/// `pkg-config ARGS npu` against the npu.pc installed in `prefix`, split
/// into words. The real pkg-config, required: a parser of our own would
/// only check npu.pc against our reading of the format.
pub fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    checked(
        "pkg-config (required: apt-get install pkg-config)",
        Command::new("pkg-config")
            .args(args)
            .arg("npu")
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
    )
    .stdout
    .split_whitespace()
    .map(String::from)
    .collect()
}

/// Compile the C11 program `source` into `exe` with warnings as errors
/// (`$CC`, default cc), `flags` after the source.
pub fn cc(source: &Path, flags: &[String], exe: &Path) {
    checked(
        &format!("cc {}", source.display()),
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
            .arg(source)
            .args(flags)
            .arg("-o")
            .arg(exe),
    );
}
