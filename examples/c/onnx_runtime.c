/* SPDX-License-Identifier: MIT */
/*
 * onnx_runtime: an ONNX model on the NPU from C, through libnpu's C API.
 *
 * Loads an ONNX model (npu_model_load_onnx: imported and compiled once),
 * runs it from two threads at once, each with its own input and its own
 * request, starts two asynchronous runs where the second waits on the
 * first one's fence, and reads the kind and address of a device fault
 * from a raw job that deliberately loads from an unmapped NPU address.
 * Every output is compared with a reference output (e.g. onnxruntime's,
 * which the tests compute) to within |got - want| <= atol + rtol * |want|.
 *
 *   onnx_runtime [--model] MODEL.onnx SHAPES REFDIR ATOL RTOL
 *
 * --model: the in-process device model instead of /dev/accel.
 * SHAPES: the shapes of symbolic inputs ("x=1,3,48,192"), or "" for none.
 * REFDIR holds input0.bin, output0.bin, input1.bin, output1.bin: raw
 * little-endian float32, the model's one input and one output.
 *
 * Build: cc onnx_runtime.c $(pkg-config --cflags --libs npu) -lpthread -lm
 * (libnpu-onnx.so.1, `make install-libnpu-onnx`, beside libnpu.so).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <npu.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the faulting raw job loads from: no buffer is mapped there. */
#define UNMAPPED_ADDRESS 0x40000000u

static struct npu_tensor_info in_info = { .struct_size = sizeof(in_info) };
static struct npu_tensor_info out_info = { .struct_size = sizeof(out_info) };
static float *inputs[2], *expected[2];
static double abs_tol, rel_tol;

static int fail(const char *what, enum npu_status st, npu_error *err)
{
	fprintf(stderr, "onnx_runtime: %s: %s: %s\n", what, npu_status_name(st),
		npu_error_message(err));
	npu_error_free(err);
	return 1;
}

/* A whole file of exactly `bytes` bytes. */
static float *read_file(const char *dir, const char *name, size_t bytes)
{
	char path[4096];
	float *data = malloc(bytes ? bytes : 1);
	FILE *f;
	long size;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f || !data) {
		perror(path);
		goto bad;
	}
	if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || (size_t)size != bytes ||
	    fseek(f, 0, SEEK_SET) || fread(data, 1, bytes, f) != bytes) {
		fprintf(stderr, "onnx_runtime: %s: not %zu bytes\n", path, bytes);
		goto bad;
	}
	fclose(f);
	return data;
bad:
	if (f)
		fclose(f);
	free(data);
	return NULL;
}

static int check(const char *what, const float *got, const float *want)
{
	size_t n = out_info.bytes / sizeof(float);
	double worst = 0;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);

		if (!(d <= abs_tol + rel_tol * fabs(want[i]))) {
			fprintf(stderr, "onnx_runtime: %s: element %zu is %g, the reference %g\n",
				what, i, got[i], want[i]);
			return 1;
		}
		if (d > worst)
			worst = d;
	}
	printf("%s: %zu outputs match the reference (max |diff| %.3g)\n", what, n, worst);
	return 0;
}

struct worker {
	npu_model *model;
	int index;
	int rc;
};

/* One thread: its own request and input, a few runs, each checked. */
static void *work(void *arg)
{
	struct worker *wk = arg;
	float *y = malloc(out_info.bytes);
	npu_request *r = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	char what[64];

	wk->rc = 1;
	if (!y)
		return NULL;
	if ((st = npu_request_create(wk->model, &r, &err)) ||
	    (st = npu_request_set_input(r, in_info.name, inputs[wk->index], in_info.bytes, &err)))
		goto out;
	for (int run = 0; run < 3; run++) {
		memset(y, 0, out_info.bytes);
		if ((st = npu_request_run(r, &err)) ||
		    (st = npu_request_get_output(r, out_info.name, y, out_info.bytes, &err)))
			goto out;
		snprintf(what, sizeof(what), "thread %d (input%d) run %d", wk->index, wk->index, run);
		if (check(what, y, expected[wk->index]))
			goto out;
	}
	wk->rc = 0;
out:
	if (st)
		fail("thread", st, err);
	npu_request_free(r);
	free(y);
	return NULL;
}

/* Two asynchronous runs: the second starts only after the first one's
 * fence has signalled; each writes into the caller's buffer. */
static int run_async(npu_model *m)
{
	float *y[2] = { calloc(1, out_info.bytes), calloc(1, out_info.bytes) };
	npu_request *r[2] = { NULL, NULL };
	npu_fence *f[2] = { NULL, NULL };
	npu_error *err = NULL;
	enum npu_status st = NPU_OK;
	int rc = 1;

	if (!y[0] || !y[1])
		goto out;
	for (int i = 0; i < 2; i++)
		if ((st = npu_request_create(m, &r[i], &err)) ||
		    (st = npu_request_bind_input(r[i], in_info.name, inputs[i], in_info.bytes,
						 &err)) ||
		    (st = npu_request_bind_output(r[i], out_info.name, y[i], out_info.bytes, &err)))
			goto out;
	if ((st = npu_request_start(r[0], NULL, 0, &f[0], &err)) ||
	    (st = npu_request_start(r[1], &f[0], 1, &f[1], &err)))
		goto out;
	/* The second run's fence signals after the first one's. */
	if ((st = npu_fence_wait(f[1], -1, &err)))
		goto out;
	st = npu_fence_wait(f[0], 0, &err);
	if (st) {
		fprintf(stderr, "onnx_runtime: the second run ended before the first\n");
		goto out;
	}
	rc = check("async run 1", y[0], expected[0]) || check("async run 2 (after 1's fence)", y[1], expected[1]);
out:
	if (st)
		rc = fail("async", st, err);
	for (int i = 0; i < 2; i++) {
		npu_fence_free(f[i]);
		npu_request_free(r[i]);
		free(y[i]);
	}
	return rc;
}

/* A raw job: NOP; DMA_LOAD 64 bytes from UNMAPPED_ADDRESS to SRAM 0;
 * END. It must fault there, and the error says so. */
static int fault(npu_device *dev)
{
	uint32_t cmd[3][16] = { { 0 } };
	enum npu_fault_kind kind = NPU_FAULT_NONE;
	uint64_t addr = 0, seqno = 0;
	npu_error *err = NULL;
	enum npu_status st;

	cmd[0][0] = 0x00; /* NOP */
	cmd[1][0] = 0x10; /* DMA_LOAD */
	cmd[1][1] = UNMAPPED_ADDRESS; /* source address, low word */
	cmd[1][4] = 64;		      /* shape 64 x 1 x 1 */
	cmd[1][5] = 1;
	cmd[1][6] = 1;
	cmd[1][7] = 64; /* strides */
	cmd[1][8] = 64;
	cmd[1][9] = 64;
	cmd[1][10] = 64;
	cmd[2][0] = 0x01; /* END */
	st = npu_device_run_raw(dev, cmd, sizeof(cmd), NULL, 0, NULL, &err);
	if (st != NPU_ERROR_JOB_FAULT) {
		fprintf(stderr, "onnx_runtime: the faulting job gave %s\n", npu_status_name(st));
		npu_error_free(err);
		return 1;
	}
	if (npu_error_fault(err, &kind, &addr, &seqno) != NPU_OK ||
	    kind != NPU_FAULT_MMU_UNMAPPED || addr != UNMAPPED_ADDRESS) {
		fprintf(stderr, "onnx_runtime: fault kind %d at %#llx, want %d at %#x: %s\n",
			(int)kind, (unsigned long long)addr, NPU_FAULT_MMU_UNMAPPED,
			UNMAPPED_ADDRESS, npu_error_message(err));
		npu_error_free(err);
		return 1;
	}
	printf("fault: kind %d (MMU_UNMAPPED) at %#llx, job %llu: %s\n", (int)kind,
	       (unsigned long long)addr, (unsigned long long)seqno, npu_error_message(err));
	npu_error_free(err);
	return 0;
}

int main(int argc, char **argv)
{
	int on_model = argc > 1 && strcmp(argv[1], "--model") == 0;
	struct worker workers[2];
	pthread_t threads[2];
	npu_device *dev = NULL;
	npu_model *m = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	size_t n_in = 0, n_out = 0;
	int rc = 1;

	argv += on_model;
	argc -= on_model;
	if (argc != 6) {
		fprintf(stderr, "usage: onnx_runtime [--model] MODEL.onnx SHAPES REFDIR ATOL RTOL\n");
		return 2;
	}
	abs_tol = strtod(argv[4], NULL);
	rel_tol = strtod(argv[5], NULL);
	st = on_model ? npu_device_open_model(256 * 1024, &dev, &err)
		      : npu_device_open(NULL, &dev, &err);
	if (st)
		return fail("open", st, err);
	if ((st = npu_model_load_onnx(dev, argv[1], argv[2][0] ? argv[2] : NULL, &m, &err))) {
		rc = fail("load", st, err);
		goto out;
	}
	if ((st = npu_model_input_count(m, &n_in, &err)) ||
	    (st = npu_model_output_count(m, &n_out, &err)) ||
	    (st = npu_model_input_info(m, 0, &in_info, &err)) ||
	    (st = npu_model_output_info(m, 0, &out_info, &err))) {
		rc = fail("model info", st, err);
		goto out;
	}
	if (n_in != 1 || n_out != 1 || in_info.dtype != NPU_DTYPE_F32 ||
	    out_info.dtype != NPU_DTYPE_F32) {
		fprintf(stderr, "onnx_runtime: this example takes a model of one float input and one float output\n");
		goto out;
	}
	printf("%s: input %s (%llu bytes), output %s (%llu bytes)\n", argv[1], in_info.name,
	       (unsigned long long)in_info.bytes, out_info.name, (unsigned long long)out_info.bytes);
	for (int i = 0; i < 2; i++) {
		char in[32], ref[32];

		snprintf(in, sizeof(in), "input%d.bin", i);
		snprintf(ref, sizeof(ref), "output%d.bin", i);
		inputs[i] = read_file(argv[3], in, in_info.bytes);
		expected[i] = read_file(argv[3], ref, out_info.bytes);
		if (!inputs[i] || !expected[i])
			goto out;
	}
	for (int i = 0; i < 2; i++) {
		workers[i] = (struct worker){ .model = m, .index = i, .rc = 1 };
		if (pthread_create(&threads[i], NULL, work, &workers[i])) {
			perror("pthread_create");
			goto out;
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	if (workers[0].rc || workers[1].rc)
		goto out;
	printf("two threads: every run matches its own input's reference\n");
	if (run_async(m) || fault(dev))
		goto out;
	printf("onnx_runtime: all checks passed\n");
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		free(inputs[i]);
		free(expected[i]);
	}
	npu_model_free(m);
	npu_device_close(dev);
	return rc;
}
