//! examples/c/onnx_runtime.c as a user builds it: libnpu (with the device
//! model) and its ONNX plugin installed into a prefix by the Makefile's own
//! rules, the program compiled against npu.h through the real pkg-config,
//! run on a real published model (scripts/models.sh) with references
//! onnxruntime computes (tests/ort_refs.py). Then the ways it must fail: a
//! wrong reference, and no plugin.

use npu_test_support::{cc, checked, make_install, model_path, pkg_config, repo_top, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// PP-OCR's text-direction classifier (depthwise convs, hard-swish, a
/// softmax); its width and batch are symbolic in the file.
const MODEL: &str = "rapidocr-onnxruntime-1.4.4/ch_ppocr_mobile_v2.0_cls_infer.onnx";
const SHAPES: &str = "x=1,3,48,192";
// As onnx/tests/real_models.rs's bound for this model (about 10x the
// largest difference measured; onnx.rst has the figures).
const ATOL: &str = "1e-5";
const RTOL: &str = "1e-4";

/// Install libnpu and the plugin into a prefix, build the example against
/// it; the prefix and the program.
fn build() -> (TempDir, PathBuf) {
    let prefix = TempDir::new("onnx-capi-prefix");
    make_install(prefix.path(), &["install-libnpu", "install-libnpu-onnx"]);
    let flags = pkg_config(prefix.path(), &["--cflags", "--libs"]);
    let exe = prefix.path().join("onnx_runtime");
    cc(
        &repo_top().join("examples/c/onnx_runtime.c"),
        &[
            vec!["-O2".into()],
            flags,
            vec!["-lpthread".into(), "-lm".into()],
        ]
        .concat(),
        &exe,
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
    let model = model_path(MODEL);
    let (prefix, exe) = build();
    let refs = TempDir::new("onnx-capi-refs");
    references(&model, refs.path());

    let out = checked(
        "onnx_runtime",
        &mut example(prefix.path(), &exe, &model, refs.path()),
    )
    .text();
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
    std::fs::rename(refs.path().join("output0.bin"), refs.path().join("swap")).unwrap();
    std::fs::rename(
        refs.path().join("output1.bin"),
        refs.path().join("output0.bin"),
    )
    .unwrap();
    std::fs::rename(refs.path().join("swap"), refs.path().join("output1.bin")).unwrap();
    let o = example(prefix.path(), &exe, &model, refs.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("the reference"),
        "swapped references passed: {}\n{err}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Without the plugin: a status and a message saying what is missing.
    let o = example(prefix.path(), &exe, &model, refs.path())
        .env("NPU_ONNX_LIBRARY", prefix.path().join("no-such-plugin.so"))
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
        .arg(refs.path())
        .args([ATOL, RTOL])
        .env("LD_LIBRARY_PATH", prefix.path().join("lib"))
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
