//! The int8 MATMUL through the device on the kernel this host picks
//! (AVX-512 VNNI, AVX2 or the f32 path), against a triple loop.

mod common;
mod int8;

#[test]
fn int8_matmul_on_this_hosts_kernel_is_exact_in_place_and_gathered() {
    println!("int8 kernel: {}", npu_device::gemm::int8_kernel().name());
    int8::check_int8_matmuls();
}
