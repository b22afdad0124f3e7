/* SPDX-License-Identifier: MIT */
/*
 * npu.h - the C API of libnpu, the open NPU stack's userspace library.
 *
 * Compile small kernels written in libnpu's text form
 * (Documentation/userspace/kernel-language.rst) for the NPU, run them
 * through the onpu driver (or the in-process device model), read the
 * results, and check them against the CPU reference.
 *
 * Functions returning int give 0 on success and -1 on error; those
 * returning a pointer give NULL on error. npu_last_error() then says what
 * went wrong (per thread). Link with `pkg-config --libs npu`.
 *
 * Kept by hand; `cargo test -p libnpu --test capi` compiles and runs
 * libnpu/examples/c/run_kernel.c against this header and the static library.
 */
#ifndef NPU_H
#define NPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An open device: the NPU through /dev/accel, or the device model. */
typedef struct NpuSession npu_session;
/* A kernel compiled for a session's device, with its inputs and results. */
typedef struct NpuKernel npu_kernel;

/* "major.minor.patch". */
const char *npu_version(void);
/* The last error of this thread, "" if none; valid until the next call. */
const char *npu_last_error(void);

/* The first onpu NPU (/dev/accel/accelN driven by onpu). */
npu_session *npu_open(void);
/* The device model in-process, with sram_size bytes of SRAM (>= 4096). */
npu_session *npu_open_model(uint32_t sram_size);
/* NULL is ignored. */
void npu_close(npu_session *session);
/* The SRAM size kernels are tiled for, as the device reports it. */
uint32_t npu_sram_size(npu_session *session);

/* Compile a kernel in the text form; parse errors name the line. */
npu_kernel *npu_compile(npu_session *session, const char *source);
/* NULL is ignored. */
void npu_kernel_free(npu_kernel *kernel);
/* Instructions in the kernel's command buffer. */
size_t npu_kernel_insns(npu_kernel *kernel);

/* Set an input (its exact size in bytes: f32 or int8 as declared). */
int npu_set_input(npu_kernel *kernel, const char *name, const void *data, size_t bytes);
/* Typed variants: count is in elements, and the input must have that type
 * (i32 is for the biases of int8 kernels). */
int npu_set_input_f32(npu_kernel *kernel, const char *name, const float *data, size_t count);
int npu_set_input_i8(npu_kernel *kernel, const char *name, const int8_t *data, size_t count);
int npu_set_input_i32(npu_kernel *kernel, const char *name, const int32_t *data, size_t count);
/* Fill every input not set yet with seeded random values. */
int npu_random_inputs(npu_kernel *kernel, uint64_t seed);
/* Run on the device and wait; a device fault names its code and address. */
int npu_run(npu_session *session, npu_kernel *kernel);
/* Size in bytes of an output; 0 if there is no such output. */
size_t npu_output_size(npu_kernel *kernel, const char *name);
/* Copy an output of the last run (bytes must be its size). */
int npu_get_output(npu_kernel *kernel, const char *name, void *data, size_t bytes);
/* Typed variants: count is the output's number of elements. */
int npu_get_output_f32(npu_kernel *kernel, const char *name, float *data, size_t count);
int npu_get_output_i8(npu_kernel *kernel, const char *name, int8_t *data, size_t count);
/* Compare the last run with the CPU reference: int8 exactly, f32 within
 * a relative tolerance. -1 names the first differing element. */
int npu_check(npu_kernel *kernel, float tolerance);
/* Modelled device cycles of the last run. */
uint64_t npu_last_cycles(npu_kernel *kernel);

#ifdef __cplusplus
}
#endif

#endif /* NPU_H */
