//! The int8 MATMUL through the device on the AVX2 kernel, forced (it is
//! what AVX2-only hosts run; a host with AVX-512 VNNI would pick VNNI).
//! Its own test binary: the kernel choice is read once per process.

mod common;
mod int8;

#[cfg(target_arch = "x86_64")]
#[test]
fn int8_matmul_on_the_avx2_kernel_is_exact_in_place_and_gathered() {
    assert!(
        std::arch::is_x86_feature_detected!("avx2"),
        "an x86-64 test host without AVX2"
    );
    // The only test in this binary: no other thread reads the environment,
    // and the device reads the variable on its first int8 MATMUL.
    std::env::set_var("NPU_INT8_KERNEL", "avx2");
    assert_eq!(
        npu_device::gemm::int8_kernel(),
        npu_device::gemm::Int8Kernel::Avx2
    );
    int8::check_int8_matmuls();
}
