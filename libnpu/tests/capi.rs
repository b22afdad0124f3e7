//! The C API as C sees it: libnpu/examples/c/runtime_api.c and
//! tests/c/api_errors.c built against include/npu.h, on the device model;
//! the example also from a prefix `make install-libnpu` filled, through
//! the real pkg-config, linked both shared (the SONAME) and static.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// A directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("npu-capi-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `make install-libnpu` with the device model into `prefix`, as a user
/// would run it (the Makefile's own rule, symlinks and npu.pc included).
fn install(prefix: &Path) {
    let top = Path::new(MANIFEST).parent().expect("repo top");
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(top)
        .arg("install-libnpu")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg("NPU_FEATURES=model")
        .arg(format!("CARGO={}", env!("CARGO")))
        .output()
        .expect("run make (required for this test)");
    assert!(
        out.status.success(),
        "make install-libnpu failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    // The real pkg-config, required: a parser of our own would only check
    // npu.pc against our reading of the format.
    let out = Command::new("pkg-config")
        .args(args)
        .arg("npu")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .unwrap_or_else(|e| {
            panic!("pkg-config is required for this test (Debian: apt-get install pkg-config): {e}")
        });
    assert!(
        out.status.success(),
        "pkg-config {args:?} npu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Compile `c_file` (relative to the crate) with `flags` after it.
fn cc(c_file: &str, flags: &[String], exe: &Path) {
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("{MANIFEST}/{c_file}"))
        .args(flags)
        .arg("-o")
        .arg(exe)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "{c_file} does not build with {flags:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(exe: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut c = Command::new(exe);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run the C program");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "{} failed:\n{stdout}\n{}",
        exe.display(),
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// What runtime_api.c prints when every check passed.
fn assert_runtime_api_passed(stdout: &str) {
    for want in [
        "input x: dtype 1, shape [4,64], 1024 bytes",
        "output y: dtype 1, shape [4,16], 256 bytes",
        "thread 1 run 2: matches the C reference",
        "thread 2 run 2: matches the C reference",
        "async run with a fence: matches the C reference",
        "saved and loaded model: matches the C reference",
        "sync_file: none on the device model",
        "fault: kind 1 (MMU_UNMAPPED) at 0x40000000",
        "runtime_api: all checks passed",
    ] {
        assert!(stdout.contains(want), "no `{want}` in:\n{stdout}");
    }
}

#[test]
fn installed_library_has_a_soname_links_and_runs_the_c_example() {
    let prefix = TempDir::new("prefix");
    install(&prefix.0);
    let lib = prefix.0.join("lib");
    let header = std::fs::read_to_string(prefix.0.join("include/npu.h")).expect("npu.h");
    let version = ["MAJOR", "MINOR", "PATCH"].map(|p| {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define NPU_VERSION_{p} ")))
            .unwrap_or_else(|| panic!("npu.h has no NPU_VERSION_{p}"))
            .trim()
            .to_string()
    });
    let full = version.join(".");
    let soname = format!("libnpu.so.{}", version[0]);
    // The real file, the SONAME link and the development link.
    assert!(lib.join(format!("libnpu.so.{full}")).is_file());
    assert_eq!(
        std::fs::read_link(lib.join(&soname)).expect("SONAME link"),
        PathBuf::from(format!("libnpu.so.{full}"))
    );
    assert_eq!(
        std::fs::read_link(lib.join("libnpu.so")).expect("dev link"),
        PathBuf::from(&soname)
    );
    let readelf = Command::new("readelf")
        .arg("-d")
        .arg(lib.join("libnpu.so"))
        .output()
        .expect("readelf (binutils) is required for this test");
    let dynamic = String::from_utf8_lossy(&readelf.stdout);
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
    );
    assert_eq!(pkg_config(&prefix.0, &["--modversion"]).join(" "), full);

    // Shared: the program records the SONAME and runs with it.
    let exe = prefix.0.join("runtime_api");
    let flags = pkg_config(&prefix.0, &["--cflags", "--libs"]);
    assert!(flags.iter().any(|f| f == "-lnpu"), "{flags:?}");
    cc(
        "examples/c/runtime_api.c",
        &[flags, vec!["-lm".into(), "-lpthread".into()]].concat(),
        &exe,
    );
    let needed = Command::new("readelf")
        .arg("-d")
        .arg(&exe)
        .output()
        .expect("readelf");
    assert!(
        String::from_utf8_lossy(&needed.stdout).contains(&format!("Shared library: [{soname}]")),
        "the program does not record {soname}"
    );
    let stdout = run(&exe, &["--model"], &[("LD_LIBRARY_PATH", &lib)]);
    assert!(
        stdout.contains(&format!("libnpu {full} (header {full})")),
        "{stdout}"
    );
    assert_runtime_api_passed(&stdout);

    // Static, with the flags of --static.
    let exe = prefix.0.join("runtime_api_static");
    let flags = pkg_config(&prefix.0, &["--cflags", "--libs", "--static"]);
    let flags: Vec<String> = flags
        .into_iter()
        .map(|f| {
            if f == "-lnpu" {
                lib.join("libnpu.a").display().to_string()
            } else {
                f
            }
        })
        .collect();
    cc("examples/c/runtime_api.c", &flags, &exe);
    assert_runtime_api_passed(&run(&exe, &["--model"], &[]));
}

#[test]
fn c_api_misuse_gives_status_codes_with_messages() {
    let prefix = TempDir::new("errors");
    install(&prefix.0);
    let exe = prefix.0.join("api_errors");
    let lib = prefix.0.join("lib/libnpu.a").display().to_string();
    cc(
        "tests/c/api_errors.c",
        &[
            format!("-I{MANIFEST}/include"),
            lib,
            "-lpthread".into(),
            "-ldl".into(),
            "-lm".into(),
        ],
        &exe,
    );
    let stdout = run(&exe, &[], &[]);
    assert!(stdout.contains("all C API error checks passed"), "{stdout}");
}
