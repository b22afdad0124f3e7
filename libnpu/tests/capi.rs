//! The C API as C sees it: compile libnpu/examples/c/run_kernel.c against
//! include/npu.h, link the static library, run it on the device model.

use std::path::PathBuf;
use std::process::Command;

/// The static library, built now: `cargo test` builds only the rlib.
fn staticlib() -> PathBuf {
    // target/<profile>/deps/capi-xxxx -> target/<profile>/libnpu.a
    let exe = std::env::current_exe().expect("test path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-q", "-p", "libnpu", "--lib"]).current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cargo.arg("--release");
    }
    let st = cargo.status().expect("run cargo");
    assert!(st.success(), "cargo build of the static library failed");
    profile_dir.join("libnpu.a")
}

#[test]
fn c_example_compiles_links_and_runs_on_the_model() {
    let lib = staticlib();
    assert!(lib.exists(), "{} missing: cargo builds the staticlib with the tests", lib.display());
    let dir = std::env::temp_dir().join(format!("npu-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = dir.join("run_kernel");
    let manifest = env!("CARGO_MANIFEST_DIR");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(format!("{manifest}/include"))
        .arg(format!("{manifest}/examples/c/run_kernel.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("run cc");
    assert!(cc.status.success(), "C example does not build:\n{}", String::from_utf8_lossy(&cc.stderr));
    let out = Command::new(&exe).arg("--model").output().expect("run the C example");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "C example failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("the result matches the CPU reference"), "{stdout}");
}
