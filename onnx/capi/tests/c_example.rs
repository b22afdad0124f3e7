//! examples/c/onnx_runtime.c as a user builds it: libnpu (with the device
//! model) and its ONNX plugin installed into a prefix by the Makefile's own
//! rules, the program compiled against npu.h through the real pkg-config,
//! run on a real published model (scripts/models.sh) with references
//! onnxruntime computes (tests/ort_refs.py). Then the ways it must fail: a
//! wrong reference, and no plugin.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// PP-OCR's text-direction classifier (depthwise convs, hard-swish, a
/// softmax); its width and batch are symbolic in the file.
const MODEL: &str = "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx";
const SHAPES: &str = "x=1,3,48,192";
// As onnx/tests/real_models.rs's bound for this model (about 10x the
// largest difference measured; onnx.rst has the figures).
const ATOL: &str = "1e-5";
const RTOL: &str = "1e-4";

fn top() -> PathBuf {
    Path::new(MANIFEST).join("../..")
}

fn models_dir() -> PathBuf {
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

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("npu-onnx-capi-{name}-{}", std::process::id()));
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

fn checked(what: &str, cmd: &mut Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(status.success(), "{what} failed ({status}):\n{text}");
    text
}

/// Install libnpu and the plugin into a prefix, build the example against
/// it; the prefix and the program.
fn build() -> (TempDir, PathBuf) {
    let prefix = TempDir::new("prefix");
    let top = top();
    checked(
        "make install-libnpu install-libnpu-onnx",
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&top)
            .args(["install-libnpu", "install-libnpu-onnx"])
            .arg(format!("PREFIX={}", prefix.0.display()))
            .arg("NPU_FEATURES=model")
            // libnpu's tests build the same into the same dir; the plugin
            // (libnpu without the model) has its own (see the Makefile).
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
    let flags = checked(
        "pkg-config --cflags --libs npu (required: apt-get install pkg-config)",
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "npu"])
            .env("PKG_CONFIG_PATH", prefix.0.join("lib/pkgconfig")),
    );
    let exe = prefix.0.join("onnx_runtime");
    checked(
        "cc examples/c/onnx_runtime.c",
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"])
            .arg(top.join("examples/c/onnx_runtime.c"))
            .args(flags.split_whitespace())
            .args(["-lpthread", "-lm", "-o"])
            .arg(&exe),
    );
    (prefix, exe)
}

/// onnxruntime's references for two seeded inputs, into `dir`.
fn references(model: &Path, dir: &Path) {
    checked(
        "tests/ort_refs.py (onnxruntime and numpy: scripts/host-deps.sh)",
        Command::new("python3")
            .arg(Path::new(MANIFEST).join("tests/ort_refs.py"))
            .arg(model)
            .arg(SHAPES)
            .arg(dir),
    );
}

fn example(prefix: &Path, exe: &Path, model: &Path, refs: &Path) -> Command {
    let mut c = Command::new(exe);
    c.arg("--model")
        .arg(model)
        .arg(SHAPES)
        .arg(refs)
        .args([ATOL, RTOL])
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .env_remove("NPU_ONNX_LIBRARY");
    c
}

#[test]
fn c_example_runs_an_onnx_model_from_two_threads_async_and_reads_a_fault() {
    let model = models_dir().join(MODEL);
    assert!(
        model.is_file(),
        "{} is missing: run scripts/models.sh (make test does, through scripts/host-deps.sh)",
        model.display()
    );
    let (prefix, exe) = build();
    let refs = TempDir::new("refs");
    references(&model, &refs.0);

    let out = checked(
        "onnx_runtime",
        &mut example(&prefix.0, &exe, &model, &refs.0),
    );
    for want in [
        "input x (110592 bytes), output save_infer_model/scale_0.tmp_1 (8 bytes)",
        "thread 0 (input0) run 2: 2 outputs match the reference",
        "thread 1 (input1) run 2: 2 outputs match the reference",
        "two threads: every run matches its own input's reference",
        "async run 1: 2 outputs match the reference",
        "async run 2 (after 1's fence): 2 outputs match the reference",
        "fault: kind 1 (MMU_UNMAPPED) at 0x40000000",
        "onnx_runtime: all checks passed",
    ] {
        assert!(out.contains(want), "no `{want}` in:\n{out}");
    }

    // The checks can fail: with the two references swapped, each thread's
    // output is compared with the other input's (they differ by far more
    // than the tolerance: ort_refs.py prints by how much).
    std::fs::rename(refs.0.join("output0.bin"), refs.0.join("swap")).unwrap();
    std::fs::rename(refs.0.join("output1.bin"), refs.0.join("output0.bin")).unwrap();
    std::fs::rename(refs.0.join("swap"), refs.0.join("output1.bin")).unwrap();
    let o = example(&prefix.0, &exe, &model, &refs.0).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("the reference"),
        "swapped references passed: {}\n{err}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Without the plugin: a status and a message saying what is missing.
    let o = example(&prefix.0, &exe, &model, &refs.0)
        .env("NPU_ONNX_LIBRARY", prefix.0.join("no-such-plugin.so"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("load: NPU_ERROR_UNSUPPORTED")
            && err.contains("libnpu-onnx.so.1"),
        "no plugin: {err}"
    );

    // A symbolic dimension not given: the importer's refusal, through C.
    let o = Command::new(&exe)
        .arg("--model")
        .arg(&model)
        .arg("")
        .arg(&refs.0)
        .args([ATOL, RTOL])
        .env("LD_LIBRARY_PATH", prefix.0.join("lib"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("load: NPU_ERROR_UNSUPPORTED")
            && err.contains("input `x`: dimension 2 is `?`"),
        "no shape for a symbolic dimension: {err}"
    );
}
