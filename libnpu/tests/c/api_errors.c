/* SPDX-License-Identifier: MIT */
/*
 * The C API's error contract: every misuse gives -1/NULL/0 and a message
 * from npu_last_error() that names the problem. Prints one line per failed
 * expectation; exit 0 when there are none.
 */
#include <npu.h>
#include <stdio.h>
#include <string.h>

static int failures;

static void expect(int cond, const char *what, const char *want)
{
	const char *msg = npu_last_error();

	if (!cond || (want && !strstr(msg, want))) {
		printf("FAIL %s: last error \"%s\", want \"%s\"\n", what, msg, want ? want : "");
		failures++;
	}
}

int main(void)
{
	float f[4] = { 1, -2, 3, -4 }, out[4];
	int8_t q[4] = { 0 };
	npu_session *s;
	npu_kernel *k;

	expect(strlen(npu_version()) >= 5, "version", NULL);
	expect(npu_open_model(100) == NULL, "tiny SRAM", "below the 4096-byte minimum");
	s = npu_open_model(64 * 1024);
	expect(s != NULL, "open the model", NULL);
	if (!s)
		return 1;
	expect(npu_sram_size(s) == 64 * 1024, "SRAM size", NULL);
	expect(npu_sram_size(NULL) == 0, "NULL session", "session is NULL");
	expect(npu_compile(s, NULL) == NULL, "NULL source", "source is NULL");
	expect(npu_compile(s, "input x: f32[4]\ny = relu(z)\noutput y\n") == NULL, "parse error", "parse error at 2:");
	k = npu_compile(s, "input x: f32[4]\ny = relu(x)\noutput y\n");
	expect(k != NULL, "compile", NULL);
	if (!k)
		return 1;
	expect(npu_get_output_f32(k, "y", out, 4) == -1, "output before run", "has not run yet");
	expect(npu_run(s, k) == -1, "run without inputs", "input `x`: not given");
	expect(npu_set_input_i8(k, "x", q, 4) == -1, "wrong type", "input `x` is f32, not i8");
	expect(npu_set_input_f32(k, "x", f, 3) == -1, "wrong count", "takes 4 values, not 3");
	expect(npu_set_input(k, "x", f, 15) == -1, "wrong size", "takes 16 bytes, not 15");
	expect(npu_set_input_f32(k, "x", f, 4) == 0, "set input", NULL);
	expect(npu_run(s, k) == 0, "run", NULL);
	expect(npu_get_output_i8(k, "y", q, 4) == -1, "wrong output type", "output `y` is f32, not i8");
	expect(npu_get_output_f32(k, "nope", out, 4) == -1, "unknown output", "no output `nope`");
	expect(npu_output_size(k, "nope") == 0, "size of an unknown output", NULL);
	expect(npu_get_output_f32(k, "y", out, 4) == 0, "get output", NULL);
	expect(out[0] == 1 && out[1] == 0 && out[2] == 3 && out[3] == 0, "relu values", NULL);
	expect(npu_check(k, 0.0f) == 0, "check", NULL);
	expect(npu_last_cycles(k) > 0, "cycles", NULL);
	npu_kernel_free(k);
	npu_kernel_free(NULL);
	npu_close(s);
	npu_close(NULL);
	if (!failures)
		printf("all C API error checks passed\n");
	return failures != 0;
}
