//! The C API as C sees it: libnpu/examples/c/runtime_api.c and
//! tests/c/api_errors.c built against include/npu.h, on the device model;
//! the example also from a prefix `make install-libnpu` filled, through
//! the real pkg-config, linked both shared (the SONAME) and static.

use npu::api::Status;
use npu::capi::{dtype_code, NpuDeviceInfo, NpuTensorInfo};
use npu::isa::Fault;
use npu::DType;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use npu_test_support::{cc, checked, make_install, pkg_config, TempDir};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// `make install-libnpu` with the device model into `prefix`, as a user
/// would run it (the Makefile's own rule, symlinks and npu.pc included).
fn install(prefix: &Path) {
    make_install(prefix, &["install-libnpu"]);
}

/// The C file `c_file` of this crate.
fn source(c_file: &str) -> PathBuf {
    Path::new(MANIFEST).join(c_file)
}

/// Run the C program, which must succeed; its stdout.
fn run(exe: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut c = Command::new(exe);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    checked(&exe.display().to_string(), &mut c).stdout
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
        "run after a sync_file: matches the C reference",
        "fault: kind 1 (MMU_UNMAPPED) at 0x40000000",
        "runtime_api: all checks passed",
    ] {
        assert!(stdout.contains(want), "no `{want}` in:\n{stdout}");
    }
}

#[test]
fn installed_library_has_a_soname_links_and_runs_the_c_example() {
    let prefix = TempDir::new("prefix");
    install(prefix.path());
    let lib = prefix.path().join("lib");
    let header = std::fs::read_to_string(prefix.path().join("include/npu.h")).expect("npu.h");
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
    assert_eq!(pkg_config(prefix.path(), &["--modversion"]).join(" "), full);

    // Shared: the program records the SONAME and runs with it.
    let exe = prefix.path().join("runtime_api");
    let flags = pkg_config(prefix.path(), &["--cflags", "--libs"]);
    assert!(flags.iter().any(|f| f == "-lnpu"), "{flags:?}");
    cc(
        &source("examples/c/runtime_api.c"),
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
    // The header declares exactly what the library exports.
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib.join("libnpu.so"))
        .output()
        .expect("nm (binutils) is required for this test");
    let mut exported: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(String::from))
        .collect();
    exported.sort();
    // The identifier right before each '(' that starts with npu_.
    let mut declared: Vec<String> = header
        .split('(')
        .filter_map(|chunk| {
            chunk
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
        })
        .filter(|w| w.starts_with("npu_"))
        .map(String::from)
        .collect();
    declared.sort();
    declared.dedup();
    assert_eq!(exported, declared, "exported symbols vs npu.h's functions");
    let stdout = run(&exe, &["--model"], &[("LD_LIBRARY_PATH", &lib)]);
    assert!(
        stdout.contains(&format!("libnpu {full} (header {full})")),
        "{stdout}"
    );
    assert_runtime_api_passed(&stdout);

    // Static, with the flags of --static.
    let exe = prefix.path().join("runtime_api_static");
    let flags = pkg_config(prefix.path(), &["--cflags", "--libs", "--static"]);
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
    cc(&source("examples/c/runtime_api.c"), &flags, &exe);
    assert_runtime_api_passed(&run(&exe, &["--model"], &[]));
}

#[test]
fn c_api_misuse_gives_status_codes_with_messages() {
    let prefix = TempDir::new("errors");
    install(prefix.path());
    let exe = prefix.path().join("api_errors");
    let lib = prefix.path().join("lib/libnpu.a").display().to_string();
    cc(
        &source("tests/c/api_errors.c"),
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

#[test]
fn npu_h_layouts_and_numbers_match_the_rust_side() {
    let dir = TempDir::new("layout");
    let exe = dir.path().join("abi_layout");
    cc(
        &source("tests/c/abi_layout.c"),
        &[format!("-I{MANIFEST}/include")],
        &exe,
    );
    let stdout = run(&exe, &[], &[]);
    let c: std::collections::HashMap<&str, i64> = stdout
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k, v.parse().expect("a number")))
        .collect();
    let want: Vec<(&str, i64)> = vec![
        (
            "sizeof(struct npu_device_info)",
            size_of::<NpuDeviceInfo>() as i64,
        ),
        (
            "offsetof(struct npu_device_info, backend)",
            offset_of!(NpuDeviceInfo, backend) as i64,
        ),
        (
            "offsetof(struct npu_device_info, sram_size)",
            offset_of!(NpuDeviceInfo, sram_size) as i64,
        ),
        (
            "offsetof(struct npu_device_info, job_timeout_ms)",
            offset_of!(NpuDeviceInfo, job_timeout_ms) as i64,
        ),
        (
            "offsetof(struct npu_device_info, va_start)",
            offset_of!(NpuDeviceInfo, va_start) as i64,
        ),
        (
            "offsetof(struct npu_device_info, va_end)",
            offset_of!(NpuDeviceInfo, va_end) as i64,
        ),
        (
            "sizeof(struct npu_tensor_info)",
            size_of::<NpuTensorInfo>() as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, dtype)",
            offset_of!(NpuTensorInfo, dtype) as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, name)",
            offset_of!(NpuTensorInfo, name) as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, rank)",
            offset_of!(NpuTensorInfo, rank) as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, shape)",
            offset_of!(NpuTensorInfo, shape) as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, bytes)",
            offset_of!(NpuTensorInfo, bytes) as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, scale)",
            offset_of!(NpuTensorInfo, scale) as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, zero_point)",
            offset_of!(NpuTensorInfo, zero_point) as i64,
        ),
        (
            "offsetof(struct npu_tensor_info, quant_axis)",
            offset_of!(NpuTensorInfo, quant_axis) as i64,
        ),
        ("sizeof(enum npu_status)", 4),
        ("NPU_MAX_RANK", 8),
        ("NPU_DTYPE_F32", dtype_code(DType::F32).into()),
        ("NPU_DTYPE_I8", dtype_code(DType::I8).into()),
        ("NPU_DTYPE_I32", dtype_code(DType::I32).into()),
        ("NPU_DTYPE_U8", dtype_code(DType::U8).into()),
        ("NPU_DTYPE_F16", dtype_code(DType::F16).into()),
        ("NPU_DTYPE_BF16", dtype_code(DType::Bf16).into()),
        ("NPU_ERROR_INVALID_ARGUMENT", Status::InvalidArgument as i64),
        ("NPU_ERROR_NOT_FOUND", Status::NotFound as i64),
        ("NPU_ERROR_UNSUPPORTED", Status::Unsupported as i64),
        ("NPU_ERROR_PARSE", Status::Parse as i64),
        ("NPU_ERROR_COMPILE", Status::Compile as i64),
        ("NPU_ERROR_DEVICE", Status::Device as i64),
        ("NPU_ERROR_JOB_FAULT", Status::JobFault as i64),
        ("NPU_ERROR_TIMEOUT", Status::Timeout as i64),
        ("NPU_ERROR_BUSY", Status::Busy as i64),
        ("NPU_ERROR_IO", Status::Io as i64),
        ("NPU_ERROR_INTERNAL", Status::Internal as i64),
        // The fault kinds are the hardware's codes (npu-isa).
        ("NPU_FAULT_MMU_UNMAPPED", Fault::MmuUnmapped.code().into()),
        (
            "NPU_FAULT_MMU_PERMISSION",
            Fault::MmuPermission.code().into(),
        ),
        ("NPU_FAULT_MMU_VA_RANGE", Fault::MmuVaRange.code().into()),
        ("NPU_FAULT_BAD_OPCODE", Fault::BadOpcode.code().into()),
        ("NPU_FAULT_BAD_OPERAND", Fault::BadOperand.code().into()),
        ("NPU_FAULT_SRAM_RANGE", Fault::SramRange.code().into()),
        (
            "NPU_FAULT_CMDBUF_OVERRUN",
            Fault::CmdbufOverrun.code().into(),
        ),
        ("NPU_FAULT_BAD_CONTEXT", Fault::BadContext.code().into()),
        ("NPU_FAULT_DMA_BUS_ERROR", Fault::DmaBusError.code().into()),
        (
            "NPU_FAULT_BAD_SUBMISSION",
            Fault::BadSubmission.code().into(),
        ),
        ("NPU_FAULT_ABORTED", Fault::Aborted.code().into()),
        ("NPU_FAULT_INDEX_RANGE", Fault::IndexRange.code().into()),
    ];
    for (name, value) in want {
        assert_eq!(c.get(name), Some(&value), "{name}");
    }
}
