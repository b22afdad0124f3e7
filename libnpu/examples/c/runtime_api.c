/* SPDX-License-Identifier: MIT */
/*
 * runtime_api: libnpu's runtime API v1 from C, as a runtime uses it.
 *
 * Loads (compiles) a model once, lists its inputs and outputs, runs it
 * from two threads at once with different inputs (a request each), runs
 * it asynchronously into the caller's buffer and waits on the fence,
 * shares an output as a dma-buf read through mmap() (on the NPU), saves
 * the compiled model and loads it back without compiling, and reads the
 * kind and address of a device fault from a deliberately faulting raw
 * job. Every result is checked against a reference computed
 * here in plain C.
 *
 *   runtime_api            the NPU through /dev/accel (the onpu driver)
 *   runtime_api --model    the in-process device model (no driver needed)
 *
 * Build: cc runtime_api.c $(pkg-config --cflags --libs npu)
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <npu.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#define M 4
#define K 64
#define N 16

static const char *source =
	"# y = relu(x @ w + b)\n"
	"input x: f32[4,64]\n"
	"input w: f32[64,16]\n"
	"input b: f32[16]\n"
	"y = gemm(x, w, bias=b) |> relu\n"
	"output y\n";

static float w[K * N], b[N];

/* Print a failed call's status and message, free the error, return 1. */
static int fail(const char *what, enum npu_status st, npu_error *err)
{
	fprintf(stderr, "runtime_api: %s: %s: %s\n", what, npu_status_name(st),
		npu_error_message(err));
	npu_error_free(err);
	return 1;
}

static void fill_x(float *x, int seed)
{
	for (int i = 0; i < M * K; i++)
		x[i] = (float)((i * 37 + seed * 11) % 17 - 8) / 8.0f;
}

/* The reference: y = relu(x @ w + b), in double. */
static int check(const char *what, const float *x, const float *y)
{
	for (int i = 0; i < M; i++) {
		for (int j = 0; j < N; j++) {
			double acc = b[j];

			for (int k = 0; k < K; k++)
				acc += (double)x[i * K + k] * w[k * N + j];
			if (acc < 0)
				acc = 0;
			if (fabs(acc - y[i * N + j]) > 1e-4 * fmax(1.0, fabs(acc))) {
				fprintf(stderr, "runtime_api: %s: y[%d][%d] = %f, want %f\n", what, i,
					j, y[i * N + j], acc);
				return 1;
			}
		}
	}
	printf("%s: matches the C reference\n", what);
	return 0;
}

/* Set the weights of a request (copied into it). */
static enum npu_status set_weights(npu_request *r, npu_error **err)
{
	enum npu_status st = npu_request_set_input(r, "w", w, sizeof(w), err);

	return st ? st : npu_request_set_input(r, "b", b, sizeof(b), err);
}

struct worker {
	npu_model *model;
	int seed;
	int rc;
};

/* One thread: its own request and inputs, several runs. */
static void *work(void *arg)
{
	struct worker *wk = arg;
	float x[M * K], y[M * N];
	npu_request *r = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	char what[64];

	wk->rc = 1;
	fill_x(x, wk->seed);
	st = npu_request_create(wk->model, &r, &err);
	if (st)
		return fail("request", st, err), NULL;
	if ((st = set_weights(r, &err)) || (st = npu_request_bind_input(r, "x", x, sizeof(x), &err)))
		goto out;
	for (int run = 0; run < 3; run++) {
		if ((st = npu_request_run(r, &err)) ||
		    (st = npu_request_get_output(r, "y", y, sizeof(y), &err)))
			goto out;
		snprintf(what, sizeof(what), "thread %d run %d", wk->seed, run);
		if (check(what, x, y))
			goto out;
	}
	wk->rc = 0;
out:
	if (st)
		fail("thread", st, err);
	npu_request_free(r);
	return NULL;
}

static uint32_t backend;

/* The fence as a sync_file: on the NPU, a descriptor poll() reports ready
 * once the run's job has ended; the device model has no kernel fences (the
 * export answers once the run has ended). */
static int sync_file(npu_fence *f)
{
	npu_error *err = NULL;
	struct pollfd p = { .events = POLLIN };
	enum npu_status st = npu_fence_export_sync_file(f, &p.fd, &err);

	if (backend == NPU_BACKEND_MODEL) {
		if (st != NPU_ERROR_UNSUPPORTED)
			return fail("sync_file on the model", st, err);
		npu_error_free(err);
		printf("sync_file: none on the device model\n");
		return 0;
	}
	if (st)
		return fail("sync_file", st, err);
	/* Ready when the job has ended: poll() waits for it. */
	if (poll(&p, 1, 60000) != 1 || !(p.revents & POLLIN)) {
		fprintf(stderr, "runtime_api: the sync_file is not signalled\n");
		close(p.fd);
		return 1;
	}
	close(p.fd);
	printf("sync_file: signalled\n");
	return 0;
}

static int list_io(npu_model *m)
{
	size_t n_in, n_out;
	npu_error *err = NULL;
	enum npu_status st;

	if ((st = npu_model_input_count(m, &n_in, &err)) ||
	    (st = npu_model_output_count(m, &n_out, &err)))
		return fail("count", st, err);
	for (size_t i = 0; i < n_in + n_out; i++) {
		struct npu_tensor_info t = { .struct_size = sizeof(t) };

		st = i < n_in ? npu_model_input_info(m, i, &t, &err)
			      : npu_model_output_info(m, i - n_in, &t, &err);
		if (st)
			return fail("info", st, err);
		printf("%s %s: dtype %d, shape [", i < n_in ? "input" : "output", t.name, t.dtype);
		for (uint32_t d = 0; d < t.rank; d++)
			printf(d ? ",%lld" : "%lld", (long long)t.shape[d]);
		printf("], %llu bytes%s\n", (unsigned long long)t.bytes,
		       t.quantized ? ", quantized" : "");
	}
	/* Past the end: NOT_FOUND with a message, not a crash. */
	{
		struct npu_tensor_info t = { .struct_size = sizeof(t) };

		st = npu_model_input_info(m, n_in, &t, &err);
		if (st != NPU_ERROR_NOT_FOUND) {
			fprintf(stderr, "runtime_api: input %zu: %s\n", n_in, npu_status_name(st));
			return 1;
		}
		npu_error_free(err);
	}
	return 0;
}

/* Asynchronous: start, wait on the fence, the output in our buffer. */
static int run_async(npu_model *m)
{
	float x[M * K], y[M * N];
	npu_request *r = NULL;
	npu_fence *f = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	int rc = 1;

	fill_x(x, 7);
	memset(y, 0, sizeof(y));
	if ((st = npu_request_create(m, &r, &err)) || (st = set_weights(r, &err)) ||
	    (st = npu_request_set_input(r, "x", x, sizeof(x), &err)) ||
	    (st = npu_request_bind_output(r, "y", y, sizeof(y), &err)) ||
	    (st = npu_request_start(r, NULL, 0, &f, &err)))
		goto out;
	/* One run at a time per request. */
	st = npu_request_run(r, NULL);
	if (st != NPU_OK && st != NPU_ERROR_BUSY) {
		fprintf(stderr, "runtime_api: a second run gave %s\n", npu_status_name(st));
		st = NPU_OK;
		goto out;
	}
	st = NPU_OK;
	/* Wait on the sync_file first (on the NPU it is the job's own fence),
	 * then on the fence: y holds the output once the fence has ended. */
	if (sync_file(f))
		goto out;
	if ((st = npu_fence_wait(f, -1, &err)))
		goto out;
	rc = check("async run with a fence", x, y);
	/* A fence that has ended answers at once, also with a zero timeout. */
	if (!rc && (st = npu_fence_wait(f, 0, &err)))
		rc = 1;
out:
	if (st)
		rc = fail("async", st, err);
	npu_fence_free(f);
	npu_request_free(r);
	return rc;
}

/* The output as a dma-buf: runs write it in place, the descriptor maps it
 * for the CPU (or goes to another process or device). The device model has
 * no dma-bufs: NPU_ERROR_UNSUPPORTED. */
static int dmabuf(npu_model *m)
{
	float x[M * K];
	npu_request *r = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	void *map = MAP_FAILED;
	size_t len = (size_t)sysconf(_SC_PAGESIZE); /* y (256 bytes) in whole pages */
	int fd = -1, rc = 1;

	fill_x(x, 9);
	if ((st = npu_request_create(m, &r, &err)) || (st = set_weights(r, &err)) ||
	    (st = npu_request_set_input(r, "x", x, sizeof(x), &err)))
		goto out;
	st = npu_request_export_output_dmabuf(r, "y", &fd, &err);
	if (st == NPU_ERROR_UNSUPPORTED && backend == NPU_BACKEND_MODEL) {
		printf("dma-buf: none on the device model\n");
		npu_error_free(err);
		st = NPU_OK;
		rc = 0;
		goto out;
	}
	if (st || (st = npu_request_run(r, &err)))
		goto out;
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		perror("runtime_api: mmap of the dma-buf");
		goto out;
	}
	rc = check("output read through its dma-buf", x, map);
	if (!rc)
		printf("dma-buf: output mapped\n");
out:
	if (st)
		rc = fail("dma-buf", st, err);
	if (map != MAP_FAILED)
		munmap(map, len);
	if (fd >= 0)
		close(fd);
	npu_request_free(r);
	return rc;
}

/* A run whose job waits for a sync_file: on the NPU, the exported fence of
 * another run's job; on the device model (no kernel fences), any
 * descriptor that becomes readable, here a pipe we write when we want. */
static int after_sync_file(npu_model *m)
{
	float x[M * K], y[M * N];
	npu_request *r = NULL, *first = NULL;
	npu_fence *f = NULL, *first_done = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	int pipe_fds[2] = { -1, -1 }, in_fd = -1, rc = 1;

	fill_x(x, 9);
	if ((st = npu_request_create(m, &r, &err)) || (st = set_weights(r, &err)) ||
	    (st = npu_request_set_input(r, "x", x, sizeof(x), &err)))
		goto out;
	if (backend == NPU_BACKEND_MODEL) {
		if (pipe(pipe_fds)) {
			perror("pipe");
			goto out;
		}
		in_fd = pipe_fds[0];
	} else if ((st = npu_request_create(m, &first, &err)) || (st = set_weights(first, &err)) ||
		   (st = npu_request_set_input(first, "x", x, sizeof(x), &err)) ||
		   (st = npu_request_start(first, NULL, 0, &first_done, &err)) ||
		   (st = npu_fence_export_sync_file(first_done, &in_fd, &err))) {
		goto out;
	}
	if ((st = npu_request_start_after_sync_files(r, &in_fd, 1, &f, &err)))
		goto out;
	if (backend == NPU_BACKEND_MODEL) {
		/* Not signalled yet: the run cannot have ended. */
		st = npu_fence_wait(f, 0, NULL);
		if (st != NPU_ERROR_TIMEOUT) {
			fprintf(stderr, "runtime_api: ran before its sync_file: %s\n",
				npu_status_name(st));
			st = NPU_OK;
			goto out;
		}
		if (write(pipe_fds[1], "!", 1) != 1) {
			perror("write");
			st = NPU_OK;
			goto out;
		}
	}
	if ((st = npu_fence_wait(f, -1, &err)) ||
	    (st = npu_request_get_output(r, "y", y, sizeof(y), &err)) ||
	    (first_done && (st = npu_fence_wait(first_done, -1, &err))))
		goto out;
	rc = check("run after a sync_file", x, y);
out:
	if (st)
		rc = fail("after a sync_file", st, err);
	if (in_fd >= 0 && in_fd != pipe_fds[0])
		close(in_fd);
	for (int i = 0; i < 2; i++)
		if (pipe_fds[i] >= 0)
			close(pipe_fds[i]);
	npu_fence_free(f);
	npu_fence_free(first_done);
	npu_request_free(r);
	npu_request_free(first);
	return rc;
}

/* Save the compiled model, load it back (no compiling), run it. */
static int save_and_load(npu_device *dev, npu_model *m)
{
	char path[] = "/tmp/npu-model-XXXXXX";
	float x[M * K], y[M * N];
	npu_model *loaded = NULL;
	npu_request *r = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	int fd = mkstemp(path), rc = 1;

	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);
	fill_x(x, 3);
	if ((st = npu_model_save(m, path, &err)) ||
	    (st = npu_model_load_file(dev, path, &loaded, &err)) ||
	    (st = npu_request_create(loaded, &r, &err)) || (st = set_weights(r, &err)) ||
	    (st = npu_request_set_input(r, "x", x, sizeof(x), &err)) ||
	    (st = npu_request_run(r, &err)) ||
	    (st = npu_request_get_output(r, "y", y, sizeof(y), &err)))
		goto out;
	rc = check("saved and loaded model", x, y);
out:
	if (st)
		rc = fail("save and load", st, err);
	unlink(path);
	npu_request_free(r);
	npu_model_free(loaded);
	return rc;
}

/* A raw job that loads from an unmapped NPU address: the fault's kind and
 * address come back with the error. */
static int fault(npu_device *dev)
{
	uint32_t cmd[3][16] = { { 0 } };
	enum npu_fault_kind kind;
	uint64_t addr, seqno;
	npu_error *err = NULL;
	enum npu_status st;

	/* NOP; DMA_LOAD 64 bytes from 0x40000000 to SRAM 0; END. */
	cmd[0][0] = 0x00;
	cmd[1][0] = 0x10;
	cmd[1][1] = 0x40000000;
	cmd[1][4] = 64; /* shape 64 x 1 x 1 */
	cmd[1][5] = 1;
	cmd[1][6] = 1;
	cmd[1][7] = 64; /* strides */
	cmd[1][8] = 64;
	cmd[1][9] = 64;
	cmd[1][10] = 64;
	cmd[2][0] = 0x01;
	st = npu_device_run_raw(dev, cmd, sizeof(cmd), NULL, 0, NULL, &err);
	if (st != NPU_ERROR_JOB_FAULT) {
		fprintf(stderr, "runtime_api: the faulting job gave %s\n", npu_status_name(st));
		npu_error_free(err);
		return 1;
	}
	if (npu_error_fault(err, &kind, &addr, &seqno) != NPU_OK || kind != NPU_FAULT_MMU_UNMAPPED ||
	    addr != 0x40000000) {
		fprintf(stderr, "runtime_api: fault kind %d address %#llx: %s\n", (int)kind,
			(unsigned long long)addr, npu_error_message(err));
		npu_error_free(err);
		return 1;
	}
	printf("fault: kind %d (MMU_UNMAPPED) at %#llx: %s\n", (int)kind, (unsigned long long)addr,
	       npu_error_message(err));
	npu_error_free(err);
	return 0;
}

int main(int argc, char **argv)
{
	int model = argc > 1 && strcmp(argv[1], "--model") == 0;
	struct npu_device_info info = { .struct_size = sizeof(info) };
	struct worker workers[2];
	pthread_t threads[2];
	npu_device_list *list = NULL;
	npu_device *dev = NULL;
	npu_model *m = NULL;
	npu_error *err = NULL;
	enum npu_status st;
	int rc = 1;

	printf("libnpu %s (header %d.%d.%d)\n", npu_version(), NPU_VERSION_MAJOR, NPU_VERSION_MINOR,
	       NPU_VERSION_PATCH);
	for (int i = 0; i < K * N; i++)
		w[i] = (float)((i * 11) % 13 - 6) / 16.0f;
	for (int i = 0; i < N; i++)
		b[i] = (float)i / 4.0f - 1.0f;
	if ((st = npu_device_list_get(&list, &err)))
		return fail("devices", st, err);
	printf("%zu onpu devices\n", npu_device_list_count(list));
	for (size_t i = 0; i < npu_device_list_count(list); i++)
		printf("  %s\n", npu_device_list_path(list, i));
	npu_device_list_free(list);
	st = model ? npu_device_open_model(256 * 1024, &dev, &err)
		   : npu_device_open(NULL, &dev, &err);
	if (st)
		return fail("open", st, err);
	if ((st = npu_device_query(dev, &info, &err))) {
		rc = fail("query", st, err);
		goto out;
	}
	backend = info.backend;
	printf("%s backend, %u KiB of SRAM\n", info.backend == NPU_BACKEND_MODEL ? "model" : "accel",
	       info.sram_size / 1024);
	if ((st = npu_model_load_text(dev, source, &m, &err))) {
		rc = fail("load", st, err);
		goto out;
	}
	if (list_io(m))
		goto out;
	for (int i = 0; i < 2; i++) {
		workers[i] = (struct worker){ .model = m, .seed = i + 1, .rc = 1 };
		if (pthread_create(&threads[i], NULL, work, &workers[i])) {
			perror("pthread_create");
			goto out;
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	if (workers[0].rc || workers[1].rc)
		goto out;
	printf("two threads: every run matches\n");
	if (run_async(m) || after_sync_file(m) || dmabuf(m) || save_and_load(dev, m) || fault(dev))
		goto out;
	printf("runtime_api: all checks passed\n");
	rc = 0;
out:
	npu_model_free(m);
	npu_device_close(dev);
	return rc;
}
