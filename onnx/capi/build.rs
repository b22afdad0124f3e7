//! The plugin's SONAME: the name libnpu dlopen()s (npu::capi::ONNX_PLUGIN).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnpu-onnx.so.1");
}
