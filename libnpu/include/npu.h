/* SPDX-License-Identifier: MIT */
/*
 * npu.h - the C API of libnpu, the open NPU stack's userspace library
 * (runtime API v1). Documentation/userspace/c-api.rst is the manual.
 *
 * A device (the NPU through /dev/accel, or the in-process device model)
 * loads and compiles models once; a model's constants are uploaded to the
 * device once and stay resident; any number of requests per model each
 * hold their own inputs and outputs and run synchronously or
 * asynchronously (a fence to wait on).
 *
 * Errors: every function that can fail returns an enum npu_status
 * (NPU_OK is 0). Its last argument, npu_error **err, may be NULL; if it is
 * not and the call fails, *err receives a new error object the caller
 * owns (message, status, the device fault's kind and address) and frees
 * with npu_error_free(). Nothing is kept per thread.
 *
 * Threads: devices, models and fences may be used from any number of
 * threads at once. A request may be used from any thread, but runs one at
 * a time (a second run while one is in flight gives NPU_ERROR_BUSY).
 *
 * Versioning: the SONAME is libnpu.so.NPU_VERSION_MAJOR. Within a major
 * version, functions, enumerators and struct members are only added
 * (minor), never changed or removed; structs that libnpu fills begin with
 * struct_size, which the caller sets to sizeof, so an older program gets
 * only the members it knows. A new major version gets a new SONAME.
 *
 * Link with `pkg-config --cflags --libs npu`.
 */
#ifndef NPU_H
#define NPU_H

#include <stddef.h>
#include <stdint.h>

#define NPU_VERSION_MAJOR 1
#define NPU_VERSION_MINOR 1
#define NPU_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* What a call gave. Numbers are stable within a major version. */
enum npu_status {
	NPU_OK = 0,
	/* A NULL handle or pointer, a size or type that does not match. */
	NPU_ERROR_INVALID_ARGUMENT = 1,
	/* No such device, input, output or file. */
	NPU_ERROR_NOT_FOUND = 2,
	/* Not in this build or on this backend (e.g. the device model). */
	NPU_ERROR_UNSUPPORTED = 3,
	/* The model source or file does not parse. */
	NPU_ERROR_PARSE = 4,
	/* The compiler cannot lower the model for this device. */
	NPU_ERROR_COMPILE = 5,
	/* The device could not be opened or refused a request (errno). */
	NPU_ERROR_DEVICE = 6,
	/* The job faulted: npu_error_fault() gives the kind and address. */
	NPU_ERROR_JOB_FAULT = 7,
	/* A wait ran out of time (the run goes on), or a job was reset. */
	NPU_ERROR_TIMEOUT = 8,
	/* The request has a run in flight. */
	NPU_ERROR_BUSY = 9,
	/* Reading or writing a file failed. */
	NPU_ERROR_IO = 10,
	/* A bug in libnpu (it never unwinds into C). */
	NPU_ERROR_INTERNAL = 11,
};

/* Device fault kinds: the hardware's fault codes (Documentation/hw). */
enum npu_fault_kind {
	NPU_FAULT_NONE = 0,
	NPU_FAULT_MMU_UNMAPPED = 1,
	NPU_FAULT_MMU_PERMISSION = 2,
	NPU_FAULT_MMU_VA_RANGE = 3,
	NPU_FAULT_BAD_OPCODE = 4,
	NPU_FAULT_BAD_OPERAND = 5,
	NPU_FAULT_SRAM_RANGE = 6,
	NPU_FAULT_CMDBUF_OVERRUN = 7,
	NPU_FAULT_BAD_CONTEXT = 8,
	NPU_FAULT_DMA_BUS_ERROR = 9,
	NPU_FAULT_BAD_SUBMISSION = 10,
	NPU_FAULT_ABORTED = 11,
	NPU_FAULT_INDEX_RANGE = 12,
};

enum npu_dtype {
	NPU_DTYPE_F32 = 1,
	NPU_DTYPE_I8 = 2,
	NPU_DTYPE_I32 = 3,
	/* uint8 graph inputs/outputs: the caller's bytes are uint8; the
	 * program converts them to and from int8 on the device. */
	NPU_DTYPE_U8 = 4,
	/* float16 (IEEE binary16) and bfloat16 graph inputs/outputs: the
	 * caller's elements are 2 bytes; the program converts them to and
	 * from f32 on the device, and computes in f32. */
	NPU_DTYPE_F16 = 5,
	NPU_DTYPE_BF16 = 6,
};

typedef struct npu_error npu_error;
/* An open device; thread-safe. */
typedef struct npu_device npu_device;
/* A compiled model with resident constants; thread-safe. */
typedef struct npu_model npu_model;
/* One set of inputs and outputs of a model. */
typedef struct npu_request npu_request;
/* The end of an asynchronous run; thread-safe. */
typedef struct npu_fence npu_fence;
/* The onpu devices found when it was made. */
typedef struct npu_device_list npu_device_list;

/* The library's version, "major.minor.patch" (static storage). */
const char *npu_version(void);
/* "NPU_ERROR_TIMEOUT", ... (static storage; "?" for an unknown value). */
const char *npu_status_name(enum npu_status status);

/* Errors (see above). All take NULL. */
enum npu_status npu_error_status(const npu_error *err);
/* Valid until npu_error_free(err); "" for NULL. */
const char *npu_error_message(const npu_error *err);
/* NPU_OK and the fault of an NPU_ERROR_JOB_FAULT error, else
 * NPU_ERROR_NOT_FOUND. kind, address and seqno may be NULL. */
enum npu_status npu_error_fault(const npu_error *err, enum npu_fault_kind *kind,
				uint64_t *address, uint64_t *seqno);
void npu_error_free(npu_error *err);

/* Devices: the onpu accel nodes, in number order (accel2 before accel10). */
enum npu_status npu_device_list_get(npu_device_list **list, npu_error **err);
size_t npu_device_list_count(const npu_device_list *list);
/* NULL past the end; valid until npu_device_list_free(). */
const char *npu_device_list_path(const npu_device_list *list, size_t index);
void npu_device_list_free(npu_device_list *list);

/* Open an onpu node by path; NULL: the first one. */
enum npu_status npu_device_open(const char *path, npu_device **device, npu_error **err);
/* Open an onpu node from a file descriptor the caller keeps (libnpu uses a
 * duplicate). */
enum npu_status npu_device_open_fd(int fd, npu_device **device, npu_error **err);
/* The device model in-process with sram_size bytes of SRAM (>= 4096);
 * NPU_ERROR_UNSUPPORTED if libnpu was built without it (feature `model`). */
enum npu_status npu_device_open_model(uint32_t sram_size, npu_device **device,
				      npu_error **err);
/* Models and requests keep what they need of the device alive. */
void npu_device_close(npu_device *device);

#define NPU_BACKEND_ACCEL 1 /* the onpu driver */
#define NPU_BACKEND_MODEL 2 /* the in-process device model */

struct npu_device_info {
	uint32_t struct_size; /* the caller sets sizeof(struct npu_device_info) */
	uint32_t backend;     /* NPU_BACKEND_* */
	uint32_t device_id;
	uint32_t revision;
	uint32_t isa_version;
	uint32_t sram_size; /* bytes; what models are tiled for */
	uint32_t contexts;
	uint32_t va_bits;
	uint32_t caps;
	uint32_t clock_khz;
	uint32_t job_timeout_ms;
	uint32_t reserved;
	uint64_t va_start;
	uint64_t va_end;
};
enum npu_status npu_device_query(const npu_device *device, struct npu_device_info *info,
				 npu_error **err);

/* A model in libnpu's text form, compiled for the device. */
enum npu_status npu_model_load_text(npu_device *device, const char *source, npu_model **model,
				    npu_error **err);
/* A model file: the text form, or a compiled model npu_model_save() wrote
 * (loaded without compiling; it must fit this device's SRAM). */
enum npu_status npu_model_load_file(npu_device *device, const char *path, npu_model **model,
				    npu_error **err);
enum npu_status npu_model_save(const npu_model *model, const char *path, npu_error **err);
/* An ONNX file (external data beside it), imported and compiled for the
 * device by libnpu's ONNX plugin, libnpu-onnx.so.1, loaded on first use
 * (install it with `make install-libnpu-onnx`; the environment variable
 * NPU_ONNX_LIBRARY may name another file). input_shapes (may be NULL)
 * gives the shapes of inputs the file leaves symbolic, as
 * "NAME=D0,D1,...;NAME=..."; a symbolic leading (batch) dimension not
 * given is 1. NPU_ERROR_UNSUPPORTED without the plugin, or for a node the
 * NPU cannot run (the message names it, its op and why). Inputs and
 * outputs keep their ONNX names and shapes. Documentation/userspace/onnx.rst. */
enum npu_status npu_model_load_onnx(npu_device *device, const char *path,
				    const char *input_shapes, npu_model **model,
				    npu_error **err);
/* Requests keep the model alive. */
void npu_model_free(npu_model *model);

#define NPU_MAX_RANK 8

struct npu_tensor_info {
	uint32_t struct_size; /* the caller sets sizeof(struct npu_tensor_info) */
	enum npu_dtype dtype;
	const char *name; /* valid while the model lives */
	uint32_t rank;
	uint32_t quantized;   /* 1: real = scale * (q - zero_point) */
	int64_t shape[NPU_MAX_RANK];
	uint64_t bytes;
	float scale;          /* per-channel: the first channel's */
	int32_t zero_point;   /* per-channel: the first channel's; uint8: 0..255 */
	int32_t quant_axis;   /* -1 per tensor, else the per-channel axis */
};
enum npu_status npu_model_input_count(const npu_model *model, size_t *count, npu_error **err);
enum npu_status npu_model_output_count(const npu_model *model, size_t *count, npu_error **err);
enum npu_status npu_model_input_info(const npu_model *model, size_t index,
				     struct npu_tensor_info *info, npu_error **err);
enum npu_status npu_model_output_info(const npu_model *model, size_t index,
				      struct npu_tensor_info *info, npu_error **err);

enum npu_status npu_request_create(npu_model *model, npu_request **request, npu_error **err);
/* Waits for a run in flight (it may be using the request's buffers). */
void npu_request_free(npu_request *request);
/* Copy an input (its exact size in bytes) into the request. */
enum npu_status npu_request_set_input(npu_request *request, const char *name, const void *data,
				      size_t bytes, npu_error **err);
/* Use the caller's memory for an input or an output: no copy into the
 * request. It must stay valid (and, for an input, unchanged) until every
 * run started after this call has ended. Binding again or setting an
 * input replaces the binding.
 * Zero-copy: on the NPU, memory that starts on a page boundary (e.g. from
 * aligned_alloc(4096, ...) or mmap()) is used in place: the first run pins
 * it (a userptr buffer object, kept with the binding so later runs do not
 * pin again) and the NPU reads the input, or writes the output, there.
 * The pin lasts until the binding is replaced or the request is freed, and
 * covers whole pages (the rest of the last page must be the process's
 * memory too). Otherwise (unaligned memory, memory the kernel cannot pin,
 * an output overlapping another bound buffer, the device model) each run
 * copies the input in, and the output out when the run succeeds;
 * npu_request_is_zero_copy() tells. In place, a run that fails may have
 * written part of a bound output. */
enum npu_status npu_request_bind_input(npu_request *request, const char *name, const void *data,
				       size_t bytes, npu_error **err);
enum npu_status npu_request_bind_output(npu_request *request, const char *name, void *data,
					size_t bytes, npu_error **err);
/* Whether the last run used input or output `name` in place (*zero_copy
 * 1): a dma-buf, or bound memory the NPU reached directly; 0 before the
 * first run, for copied memory and for tensors that are not bound. */
enum npu_status npu_request_is_zero_copy(const npu_request *request, const char *name,
					 int *zero_copy, npu_error **err);

/* dma-bufs (PRIME), on the NPU only: NPU_ERROR_UNSUPPORTED on the device
 * model.
 * Export: from now on the input or output lives in a buffer object of the
 * request (an input keeps what was set or bound), which runs use in place;
 * *fd receives a new dma-buf descriptor of it, the caller's to close (each
 * call gives another descriptor of the same buffer). Give it to another
 * process (fork, SCM_RIGHTS), another request (bind it), or mmap() it to
 * read or write the bytes. The buffer lives while the request uses it or
 * any descriptor or importer holds it; setting or binding the tensor again
 * makes the request let it go. npu_request_get_output() reads an exported
 * output too.
 * Bind: a dma-buf as an input or output, used in place by runs. Its size
 * must be the tensor's size rounded up to whole pages (what an export of a
 * tensor of the same size gives), else NPU_ERROR_INVALID_ARGUMENT, as for
 * a descriptor that is not a dma-buf. libnpu does not take fd: close it
 * when you like; the request holds the buffer until the tensor is set or
 * bound again or the request is freed. Runs are ordered with other jobs of
 * the NPU that use the buffer (submitted first, they finish first);
 * anything else writing it is the caller's to order. */
enum npu_status npu_request_export_input_dmabuf(npu_request *request, const char *name, int *fd,
						npu_error **err);
enum npu_status npu_request_export_output_dmabuf(npu_request *request, const char *name, int *fd,
						 npu_error **err);
enum npu_status npu_request_bind_input_dmabuf(npu_request *request, const char *name, int fd,
					      npu_error **err);
enum npu_status npu_request_bind_output_dmabuf(npu_request *request, const char *name, int fd,
					       npu_error **err);
/* Run and wait. */
enum npu_status npu_request_run(npu_request *request, npu_error **err);
/* Start a run; *fence ends with it. wait_for (count fences, may be NULL)
 * must end first, successfully, or the run fails without starting. */
enum npu_status npu_request_start(npu_request *request, npu_fence *const *wait_for, size_t count,
				  npu_fence **fence, npu_error **err);
/* Start a run whose first job also waits for count sync_files (kernel
 * fences: npu_fence_export_sync_file() of another run, or another
 * driver's; libnpu uses duplicates). On the NPU they are the job's
 * in-fences; the device model polls them until readable. */
enum npu_status npu_request_start_after_sync_files(npu_request *request, const int *fds,
						   size_t count, npu_fence **fence,
						   npu_error **err);
/* Copy an output of the last successful run (bytes: its exact size). */
enum npu_status npu_request_get_output(const npu_request *request, const char *name, void *data,
				       size_t bytes, npu_error **err);
/* Modelled device cycles and bytes uploaded (inputs, and constants when they
 * were not resident yet) of the last successful run. Either may be NULL. */
enum npu_status npu_request_stats(const npu_request *request, uint64_t *cycles,
				  uint64_t *uploaded_bytes, npu_error **err);

/* Wait up to timeout_ns (negative: no limit) for the run: NPU_OK if it
 * succeeded, NPU_ERROR_TIMEOUT if it has not ended yet, else its error. */
enum npu_status npu_fence_wait(npu_fence *fence, int64_t timeout_ns, npu_error **err);
/* A sync_file fd (the caller's, to close) that signals when the run's last
 * job ends on the NPU: poll() it, or give it to another driver. Waits until
 * that job is queued. NPU_ERROR_UNSUPPORTED on the device model (no kernel
 * fences); a run that failed before queueing gives its error. */
enum npu_status npu_fence_export_sync_file(npu_fence *fence, int *fd, npu_error **err);
/* Does not cancel the run. */
void npu_fence_free(npu_fence *fence);

/* Submit a command buffer as it is (bytes: whole 64-byte instructions) with
 * count buffers of the given sizes, zero-filled, mapped in order; the NPU
 * address of each goes to addresses (may be NULL). For tools and tests of
 * the device; a fault gives NPU_ERROR_JOB_FAULT. */
enum npu_status npu_device_run_raw(npu_device *device, const void *commands, size_t bytes,
				   const uint64_t *sizes, size_t count, uint64_t *addresses,
				   npu_error **err);

#ifdef __cplusplus
}
#endif

#endif /* NPU_H */
