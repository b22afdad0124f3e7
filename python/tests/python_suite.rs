//! Build the `npu` wheel with maturin, install it under build/python/site
//! and run python/tests/test_session.py (onnxruntime as the reference), so
//! `cargo test --workspace` (and `make test`) runs the Python package's
//! tests and fails with them. maturin, numpy, onnx and onnxruntime come
//! from scripts/host-deps.sh; a missing one fails, never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn python_package_matches_onnxruntime() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let top = crate_dir.parent().unwrap();
    let build: PathBuf = top.join("build/python");
    let wheels = build.join("wheel");
    let site = build.join("site");
    for d in [&wheels, &site] {
        let _ = std::fs::remove_dir_all(d);
    }
    let has_maturin = Command::new("python3")
        .args(["-m", "maturin", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_maturin,
        "maturin is missing: scripts/host-deps.sh installs it (pip install maturin)"
    );
    run(
        "maturin build",
        Command::new("python3")
            .args(["-m", "maturin", "build", "--release", "--quiet", "-m"])
            .arg(crate_dir.join("Cargo.toml"))
            .arg("--out")
            .arg(&wheels)
            // Not the workspace's target dir: libnpu is a cdylib whose rlib
            // in deps/ has no hash, and this build (other dependency
            // features) would overwrite the one the workspace's crates were
            // built against (see LIBNPU_TARGET_DIR in the Makefile).
            .env("CARGO_TARGET_DIR", top.join("target").join("python-wheel"))
            .current_dir(top),
    );
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("maturin wrote no wheel");
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains("-cp39-abi3-"),
        "{name}: not an abi3 wheel for Python >= 3.9"
    );
    run(
        "pip install",
        Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--no-deps", "--target"])
            .arg(&site)
            .arg(&wheel),
    );
    let report = run(
        "python/tests/test_session.py",
        Command::new("python3")
            .arg(crate_dir.join("tests/test_session.py"))
            .env("PYTHONPATH", &site)
            // Not the working directory's `npu`, if any: the installed one.
            .current_dir(&build),
    );
    println!("{name}\n{report}");
    assert!(report.contains("\nOK"), "{report}");
}
