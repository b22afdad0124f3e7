/* SPDX-License-Identifier: MIT */
/*
 * The C API's error contract: every misuse gives its npu_status and, when
 * asked for, an error object whose message names the problem; a call
 * that succeeds leaves *err alone; errors are per call, so two errors can
 * be held at once. Prints one line per failed expectation; exit 0 when
 * there are none.
 */
#include <npu.h>
#include <stdio.h>
#include <string.h>

static int failures;

/* The call gave `want` and an error whose message contains `text`. */
static void expect(const char *what, enum npu_status got, npu_error *err, enum npu_status want,
		   const char *text)
{
	const char *msg = npu_error_message(err);

	if (got != want || npu_error_status(err) != want || (text && !strstr(msg, text))) {
		printf("FAIL %s: %s \"%s\", want %s \"%s\"\n", what, npu_status_name(got), msg,
		       npu_status_name(want), text ? text : "");
		failures++;
	}
}

int main(void)
{
	float f[4] = { 1, -2, 3, -4 }, out[4];
	npu_device *dev = NULL;
	npu_model *m = NULL;
	npu_request *r = NULL;
	npu_error *e1 = NULL, *e2 = NULL, *e = NULL;
	enum npu_status st;

	if (strcmp(npu_status_name(NPU_ERROR_JOB_FAULT), "NPU_ERROR_JOB_FAULT") ||
	    strcmp(npu_status_name((enum npu_status)99), "?")) {
		printf("FAIL npu_status_name\n");
		failures++;
	}
	st = npu_device_open_model(1024, &dev, &e);
	expect("tiny SRAM", st, e, NPU_ERROR_INVALID_ARGUMENT, "below");
	npu_error_free(e);
	e = NULL;
	st = npu_device_open("/nonexistent/accel0", &dev, &e);
	expect("no such node", st, e, NPU_ERROR_NOT_FOUND, "/nonexistent/accel0");
	npu_error_free(e);
	e = NULL;
	st = npu_device_open_model(64 * 1024, &dev, &e);
	if (st) {
		printf("FAIL open the model: %s\n", npu_error_message(e));
		return 1;
	}
	/* Two errors held at once: the second does not free the first. */
	st = npu_model_load_text(dev, "input x: f32[4]\ny = nope(x)\noutput y\n", &m, &e1);
	expect("unknown op", st, e1, NPU_ERROR_PARSE, "2:");
	st = npu_model_load_text(NULL, "", &m, &e2);
	expect("NULL device", st, e2, NPU_ERROR_INVALID_ARGUMENT, "device is NULL");
	expect("the first error still", NPU_ERROR_PARSE, e1, NPU_ERROR_PARSE, "2:");
	if (npu_error_fault(e1, NULL, NULL, NULL) != NPU_ERROR_NOT_FOUND) {
		printf("FAIL a parse error has no fault\n");
		failures++;
	}
	npu_error_free(e1);
	npu_error_free(e2);
	/* NULL err: the status alone. */
	if (npu_model_load_text(dev, NULL, &m, NULL) != NPU_ERROR_INVALID_ARGUMENT) {
		printf("FAIL NULL source\n");
		failures++;
	}
	st = npu_model_load_text(dev, "input x: f32[4]\ny = relu(x)\noutput y\n", &m, &e);
	if (st) {
		printf("FAIL compile: %s\n", npu_error_message(e));
		return 1;
	}
	/* Success leaves err alone. */
	e = NULL;
	st = npu_request_create(m, &r, &e);
	if (st || e) {
		printf("FAIL request_create\n");
		return 1;
	}
	st = npu_request_run(r, &e);
	expect("run without inputs", st, e, NPU_ERROR_INVALID_ARGUMENT, "input `x` is not set");
	npu_error_free(e);
	e = NULL;
	st = npu_request_set_input(r, "nope", f, sizeof(f), &e);
	expect("unknown input", st, e, NPU_ERROR_NOT_FOUND, "no input `nope`");
	npu_error_free(e);
	e = NULL;
	st = npu_request_set_input(r, "x", f, 3, &e);
	expect("wrong size", st, e, NPU_ERROR_INVALID_ARGUMENT, "16 bytes, not 3");
	npu_error_free(e);
	e = NULL;
	st = npu_request_set_input(r, "x", NULL, sizeof(f), &e);
	expect("NULL data", st, e, NPU_ERROR_INVALID_ARGUMENT, "data is NULL");
	npu_error_free(e);
	e = NULL;
	st = npu_request_get_output(r, "y", out, sizeof(out), &e);
	expect("output before a run", st, e, NPU_ERROR_INVALID_ARGUMENT, "not run");
	npu_error_free(e);
	e = NULL;
	if (npu_request_set_input(r, "x", f, sizeof(f), NULL) || npu_request_run(r, NULL) ||
	    npu_request_get_output(r, "y", out, sizeof(out), NULL)) {
		printf("FAIL a good run\n");
		failures++;
	} else if (out[0] != 1 || out[1] != 0 || out[2] != 3 || out[3] != 0) {
		printf("FAIL relu gave %g %g %g %g\n", out[0], out[1], out[2], out[3]);
		failures++;
	}
	/* dma-bufs: the device model has none; descriptors and out-pointers
	 * are checked first. */
	{
		int fd = -1, z = -1;

		st = npu_request_export_output_dmabuf(r, "y", &fd, &e);
		expect("export on the model", st, e, NPU_ERROR_UNSUPPORTED,
		       "not supported on this backend");
		npu_error_free(e);
		e = NULL;
		if (fd != -1) {
			printf("FAIL a failed export wrote fd %d\n", fd);
			failures++;
		}
		st = npu_request_export_input_dmabuf(r, "x", NULL, &e);
		expect("export to NULL", st, e, NPU_ERROR_INVALID_ARGUMENT, "fd is NULL");
		npu_error_free(e);
		e = NULL;
		st = npu_request_bind_input_dmabuf(r, "x", 0, &e);
		expect("bind on the model", st, e, NPU_ERROR_UNSUPPORTED,
		       "not supported on this backend");
		npu_error_free(e);
		e = NULL;
		st = npu_request_bind_output_dmabuf(r, "y", -1, &e);
		expect("bind fd -1", st, e, NPU_ERROR_INVALID_ARGUMENT, "fd -1 is not a descriptor");
		npu_error_free(e);
		e = NULL;
		st = npu_request_bind_input_dmabuf(r, "nope", 0, &e);
		expect("bind unknown input", st, e, NPU_ERROR_NOT_FOUND, "no input `nope`");
		npu_error_free(e);
		e = NULL;
		/* Bound memory is copied on the model: not zero-copy. */
		if (npu_request_bind_input(r, "x", f, sizeof(f), NULL) ||
		    npu_request_run(r, NULL) || npu_request_is_zero_copy(r, "x", &z, NULL) || z != 0) {
			printf("FAIL is_zero_copy on the model: %d\n", z);
			failures++;
		}
		st = npu_request_is_zero_copy(r, "nope", &z, &e);
		expect("is_zero_copy of nothing", st, e, NPU_ERROR_NOT_FOUND, "`nope`");
		npu_error_free(e);
		e = NULL;
	}
	st = npu_model_load_file(dev, "/nonexistent/model.npu", &m, &e);
	expect("no model file", st, e, NPU_ERROR_NOT_FOUND, "/nonexistent/model.npu");
	npu_error_free(e);
	e = NULL;
	st = npu_fence_wait(NULL, 0, &e);
	expect("NULL fence", st, e, NPU_ERROR_INVALID_ARGUMENT, "fence is NULL");
	npu_error_free(e);
	/* NULL handles are ignored by the free functions. */
	npu_request_free(NULL);
	npu_model_free(NULL);
	npu_device_close(NULL);
	npu_fence_free(NULL);
	npu_error_free(NULL);
	npu_request_free(r);
	npu_model_free(m);
	npu_device_close(dev);
	if (failures)
		return 1;
	printf("all C API error checks passed\n");
	return 0;
}
