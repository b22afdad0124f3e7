/* SPDX-License-Identifier: MIT */
/*
 * run_kernel: compile a small kernel with libnpu's C API, run it on the NPU,
 * print the result and check it against the CPU reference.
 *
 *   run_kernel            the NPU through /dev/accel (the onpu driver)
 *   run_kernel --model    the in-process device model (no driver needed)
 *
 * Build: cc run_kernel.c $(pkg-config --cflags --libs --static npu)
 */
#include <npu.h>
#include <stdio.h>
#include <string.h>

static const char *source =
	"# y = relu(x @ w + b)\n"
	"input x: f32[4,64]\n"
	"input w: f32[64,16]\n"
	"input b: f32[16]\n"
	"y = gemm(x, w, bias=b) |> relu\n"
	"output y\n";

int main(int argc, char **argv)
{
	int model = argc > 1 && strcmp(argv[1], "--model") == 0;
	npu_session *s = model ? npu_open_model(256 * 1024) : npu_open();
	float x[4 * 64], w[64 * 16], b[16], y[4 * 16];
	npu_kernel *k;
	int i, rc = 1;

	if (!s) {
		fprintf(stderr, "run_kernel: %s\n", npu_last_error());
		return 1;
	}
	printf("libnpu %s, %s, %u KiB of SRAM\n", npu_version(), model ? "device model" : "onpu NPU",
	       npu_sram_size(s) / 1024);
	k = npu_compile(s, source);
	if (!k) {
		fprintf(stderr, "run_kernel: compile: %s\n", npu_last_error());
		goto out_session;
	}
	for (i = 0; i < 4 * 64; i++)
		x[i] = (float)((i * 37) % 17 - 8) / 8.0f;
	for (i = 0; i < 64 * 16; i++)
		w[i] = (float)((i * 11) % 13 - 6) / 16.0f;
	for (i = 0; i < 16; i++)
		b[i] = (float)i / 4.0f;
	if (npu_set_input(k, "x", x, sizeof(x)) || npu_set_input(k, "w", w, sizeof(w)) ||
	    npu_set_input(k, "b", b, sizeof(b))) {
		fprintf(stderr, "run_kernel: input: %s\n", npu_last_error());
		goto out_kernel;
	}
	/* A misuse is an error with a message, not a crash. */
	if (npu_set_input(k, "nope", x, sizeof(x)) == 0) {
		fprintf(stderr, "run_kernel: an unknown input was accepted\n");
		goto out_kernel;
	}
	if (npu_run(s, k)) {
		fprintf(stderr, "run_kernel: run: %s\n", npu_last_error());
		goto out_kernel;
	}
	if (npu_output_size(k, "y") != sizeof(y) || npu_get_output(k, "y", y, sizeof(y))) {
		fprintf(stderr, "run_kernel: output: %s\n", npu_last_error());
		goto out_kernel;
	}
	printf("%zu instructions, %llu modelled cycles\ny[0][0..8] =", npu_kernel_insns(k),
	       (unsigned long long)npu_last_cycles(k));
	for (i = 0; i < 8; i++)
		printf(" %.4f", y[i]);
	printf("\n");
	if (npu_check(k, 1e-4f)) {
		fprintf(stderr, "run_kernel: %s\n", npu_last_error());
		goto out_kernel;
	}
	printf("the result matches the CPU reference\n");
	rc = 0;
out_kernel:
	npu_kernel_free(k);
out_session:
	npu_close(s);
	return rc;
}
