//! The C API as C sees it: compile libnpu/examples/c/run_kernel.c against
//! include/npu.h, link the static library, run it on the device model.

use std::path::PathBuf;
use std::process::Command;

/// The static library, built now: `cargo test` builds only the rlib.
fn staticlib() -> PathBuf {
    // target/<profile>/deps/capi-xxxx -> target/<profile>/libnpu.a
    let exe = std::env::current_exe().expect("test path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "-q", "-p", "libnpu", "--lib"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
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
    assert!(
        lib.exists(),
        "{} missing: cargo builds the staticlib with the tests",
        lib.display()
    );
    let stem = c_file
        .rsplit('/')
        .next()
        .unwrap_or(c_file)
        .trim_end_matches(".c");
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
    assert!(
        cc.status.success(),
        "{c_file} does not build:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe)
        .args(args)
        .output()
        .expect("run the C program");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{c_file} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn c_example_compiles_links_and_runs_on_the_model() {
    let stdout = build_and_run("examples/c/run_kernel.c", &["--model"]);
    assert!(
        stdout.contains("the result matches the CPU reference"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the int8 result matches the CPU reference exactly"),
        "{stdout}"
    );
}

#[test]
fn c_api_misuse_gives_errors_with_messages() {
    let stdout = build_and_run("tests/c/api_errors.c", &[]);
    assert!(stdout.contains("all C API error checks passed"), "{stdout}");
}

/// `name=value` variables and `Key: value` fields of a .pc file, with
/// `${var}` expanded (what pkg-config does, for hosts without it).
fn eval_pc(pc: &str) -> std::collections::HashMap<String, String> {
    let mut vars = std::collections::HashMap::new();
    let expand = |v: &str, vars: &std::collections::HashMap<String, String>| {
        let mut out = v.to_string();
        for (k, val) in vars {
            out = out.replace(&format!("${{{k}}}"), val);
        }
        out
    };
    for line in pc.lines() {
        if let Some((k, v)) = line
            .split_once('=')
            .filter(|(k, _)| !k.contains(':') && !k.contains(' '))
        {
            let v = expand(v.trim(), &vars);
            vars.insert(k.trim().to_string(), v);
        } else if let Some((k, v)) = line.split_once(':') {
            let v = expand(v.trim(), &vars);
            vars.insert(format!("{}:", k.trim()), v);
        }
    }
    vars
}

#[test]
fn npu_pc_gives_flags_that_build_the_example_from_an_installed_prefix() {
    let lib = staticlib();
    let manifest = env!("CARGO_MANIFEST_DIR");
    let prefix = std::env::temp_dir().join(format!("npu-prefix-{}", std::process::id()));
    let pcdir = prefix.join("lib/pkgconfig");
    std::fs::create_dir_all(&pcdir).expect("prefix");
    std::fs::create_dir_all(prefix.join("include")).expect("prefix");
    std::fs::copy(&lib, prefix.join("lib/libnpu.a")).expect("install libnpu.a");
    std::fs::copy(
        format!("{manifest}/include/npu.h"),
        prefix.join("include/npu.h"),
    )
    .expect("install npu.h");
    // As `make install-libnpu` fills in npu.pc.in.
    let pc = std::fs::read_to_string(format!("{manifest}/npu.pc.in"))
        .expect("npu.pc.in")
        .replace("@PREFIX@", &prefix.to_string_lossy())
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    std::fs::write(pcdir.join("npu.pc"), &pc).expect("npu.pc");
    let flags: Vec<String> = match Command::new("pkg-config")
        .args(["--cflags", "--libs", "--static", "npu"])
        .env("PKG_CONFIG_PATH", &pcdir)
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "pkg-config rejects npu.pc:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v = Command::new("pkg-config")
                .args(["--modversion", "npu"])
                .env("PKG_CONFIG_PATH", &pcdir)
                .output()
                .expect("pkg-config");
            assert_eq!(
                String::from_utf8_lossy(&v.stdout).trim(),
                env!("CARGO_PKG_VERSION")
            );
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        }
        Err(_) => {
            let v = eval_pc(&pc);
            assert_eq!(
                v.get("Version:").map(String::as_str),
                Some(env!("CARGO_PKG_VERSION"))
            );
            ["Cflags:", "Libs:", "Libs.private:"]
                .iter()
                .flat_map(|k| {
                    v.get(*k)
                        .cloned()
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    };
    assert!(flags.iter().any(|f| f == "-lnpu"), "{flags:?}");
    let exe = prefix.join("run_kernel");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Werror"])
        .arg(format!("{manifest}/examples/c/run_kernel.c"))
        .args(&flags)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run cc");
    let out = cc
        .status
        .success()
        .then(|| Command::new(&exe).arg("--model").output().expect("run"));
    let _ = std::fs::remove_dir_all(&prefix);
    assert!(
        cc.status.success(),
        "the example does not build with {flags:?}:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = out.expect("built");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("the result matches the CPU reference"));
}
