/* SPDX-License-Identifier: MIT */
/*
 * run_kernel: compile small kernels with libnpu's C API, run them on the
 * NPU, print the results and check them against the CPU reference: an f32
 * gemm + bias + relu, then the same in int8.
 *
 *   run_kernel            the NPU through /dev/accel (the onpu driver)
 *   run_kernel --model    the in-process device model (no driver needed)
 *
 * Build: cc run_kernel.c $(pkg-config --cflags --libs --static npu)
 */
#include <npu.h>
#include <stdio.h>
#include <string.h>

static const char *f32_source =
	"# y = relu(x @ w + b)\n"
	"input x: f32[4,64]\n"
	"input w: f32[64,16]\n"
	"input b: f32[16]\n"
	"y = gemm(x, w, bias=b) |> relu\n"
	"output y\n";

static const char *int8_source =
	"# the same in int8: i32 bias, requantized\n"
	"input x: i8[4,64] q(scale=0.05, zp=0)\n"
	"input w: i8[64,16] q(scale=0.02, zp=0)\n"
	"input b: i32[16]\n"
	"y: i8 q(scale=0.1, zp=-3) = gemm(x, w, bias=b) |> relu\n"
	"output y\n";

/* Compile and run the f32 kernel with inputs set from C arrays. */
static int run_f32(npu_session *s)
{
	float x[4 * 64], w[64 * 16], b[16], y[4 * 16];
	npu_kernel *k = npu_compile(s, f32_source);
	int i, rc = 1;

	if (!k) {
		fprintf(stderr, "run_kernel: compile: %s\n", npu_last_error());
		return 1;
	}
	for (i = 0; i < 4 * 64; i++)
		x[i] = (float)((i * 37) % 17 - 8) / 8.0f;
	for (i = 0; i < 64 * 16; i++)
		w[i] = (float)((i * 11) % 13 - 6) / 16.0f;
	for (i = 0; i < 16; i++)
		b[i] = (float)i / 4.0f;
	/* Typed calls count elements; npu_set_input takes raw bytes. */
	if (npu_set_input_f32(k, "x", x, 4 * 64) || npu_set_input_f32(k, "w", w, 64 * 16) ||
	    npu_set_input(k, "b", b, sizeof(b))) {
		fprintf(stderr, "run_kernel: input: %s\n", npu_last_error());
		goto out;
	}
	/* A misuse is an error with a message, not a crash. */
	if (npu_set_input(k, "nope", x, sizeof(x)) == 0 || npu_set_input_i8(k, "x", NULL, 4 * 64) == 0) {
		fprintf(stderr, "run_kernel: a bad input was accepted\n");
		goto out;
	}
	if (npu_run(s, k)) {
		fprintf(stderr, "run_kernel: run: %s\n", npu_last_error());
		goto out;
	}
	if (npu_output_size(k, "y") != sizeof(y) || npu_get_output_f32(k, "y", y, 4 * 16)) {
		fprintf(stderr, "run_kernel: output: %s\n", npu_last_error());
		goto out;
	}
	printf("f32: %zu instructions, %llu modelled cycles\ny[0][0..8] =", npu_kernel_insns(k),
	       (unsigned long long)npu_last_cycles(k));
	for (i = 0; i < 8; i++)
		printf(" %.4f", y[i]);
	printf("\n");
	if (npu_check(k, 1e-4f)) {
		fprintf(stderr, "run_kernel: %s\n", npu_last_error());
		goto out;
	}
	printf("the result matches the CPU reference\n");
	rc = 0;
out:
	npu_kernel_free(k);
	return rc;
}

/* The int8 kernel: explicit x and bias, random weights from a seed. */
static int run_int8(npu_session *s)
{
	int8_t x[4 * 64], y[4 * 16];
	int32_t b[16];
	npu_kernel *k = npu_compile(s, int8_source);
	int i, rc = 1;

	if (!k) {
		fprintf(stderr, "run_kernel: compile: %s\n", npu_last_error());
		return 1;
	}
	for (i = 0; i < 4 * 64; i++)
		x[i] = (int8_t)((i * 29) % 255 - 127);
	for (i = 0; i < 16; i++)
		b[i] = i * 100 - 800;
	if (npu_set_input_i8(k, "x", x, 4 * 64) || npu_set_input_i32(k, "b", b, 16) ||
	    npu_random_inputs(k, 42)) {
		fprintf(stderr, "run_kernel: int8 input: %s\n", npu_last_error());
		goto out;
	}
	if (npu_run(s, k) || npu_get_output_i8(k, "y", y, 4 * 16)) {
		fprintf(stderr, "run_kernel: int8 run: %s\n", npu_last_error());
		goto out;
	}
	printf("int8: %llu modelled cycles\ny[0][0..8] =", (unsigned long long)npu_last_cycles(k));
	for (i = 0; i < 8; i++)
		printf(" %d", y[i]);
	printf("\n");
	if (npu_check(k, 0.0f)) {
		fprintf(stderr, "run_kernel: int8: %s\n", npu_last_error());
		goto out;
	}
	printf("the int8 result matches the CPU reference exactly\n");
	rc = 0;
out:
	npu_kernel_free(k);
	return rc;
}

int main(int argc, char **argv)
{
	int model = argc > 1 && strcmp(argv[1], "--model") == 0;
	npu_session *s = model ? npu_open_model(256 * 1024) : npu_open();
	int rc;

	if (!s) {
		fprintf(stderr, "run_kernel: %s\n", npu_last_error());
		return 1;
	}
	printf("libnpu %s, %s, %u KiB of SRAM\n", npu_version(), model ? "device model" : "onpu NPU",
	       npu_sram_size(s) / 1024);
	rc = run_f32(s) || run_int8(s);
	npu_close(s);
	return rc;
}
