//! The C API's version comes from include/npu.h (NPU_VERSION_MAJOR, _MINOR,
//! _PATCH): the shared library's SONAME is `libnpu.so.<major>`, so C
//! programs keep working across compatible updates, and `npu_version()`
//! reports the same numbers (Documentation/userspace/c-api.rst, "Versioning").

fn main() {
    println!("cargo:rerun-if-changed=include/npu.h");
    let header = std::fs::read_to_string("include/npu.h").expect("read include/npu.h");
    let number = |part: &str| -> u32 {
        let prefix = format!("#define NPU_VERSION_{part} ");
        header
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("include/npu.h defines NPU_VERSION_{part} as a number"))
    };
    let (major, minor, patch) = (number("MAJOR"), number("MINOR"), number("PATCH"));
    println!("cargo:rustc-env=NPU_API_VERSION={major}.{minor}.{patch}");
    println!("cargo:rustc-env=NPU_API_VERSION_MAJOR={major}");
    println!("cargo:rustc-env=NPU_API_VERSION_MINOR={minor}");
    println!("cargo:rustc-env=NPU_API_VERSION_PATCH={patch}");
    // Not rustc-cdylib-link-arg: cargo passes that one on to every cdylib
    // that depends on libnpu (the Python module, the ONNX plugin), which
    // would then claim libnpu's SONAME. rustc-link-arg stays in this
    // package (its test and example programs get an unused DT_SONAME).
    println!("cargo:rustc-link-arg=-Wl,-soname,libnpu.so.{major}");
}
