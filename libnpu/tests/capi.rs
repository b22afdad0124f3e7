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

/// Compile `c_file` (relative to the crate) against npu.h and the static
/// library, run it with `args`; its stdout.
fn build_and_run(c_file: &str, args: &[&str]) -> String {
    let lib = staticlib();
    assert!(lib.exists(), "{} missing: cargo builds the staticlib with the tests", lib.display());
    let stem = c_file.rsplit('/').next().unwrap_or(c_file).trim_end_matches(".c");
    let dir = std::env::temp_dir().join(format!("npu-capi-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = dir.join(stem);
    let manifest = env!("CARGO_MANIFEST_DIR");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(format!("{manifest}/include"))
        .arg(format!("{manifest}/{c_file}"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("run cc");
    assert!(cc.status.success(), "{c_file} does not build:\n{}", String::from_utf8_lossy(&cc.stderr));
    let out = Command::new(&exe).args(args).output().expect("run the C program");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{c_file} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn c_example_compiles_links_and_runs_on_the_model() {
    let stdout = build_and_run("examples/c/run_kernel.c", &["--model"]);
    assert!(stdout.contains("the result matches the CPU reference"), "{stdout}");
    assert!(stdout.contains("the int8 result matches the CPU reference exactly"), "{stdout}");
}

#[test]
fn c_api_misuse_gives_errors_with_messages() {
    let stdout = build_and_run("tests/c/api_errors.c", &[]);
    assert!(stdout.contains("all C API error checks passed"), "{stdout}");
}
