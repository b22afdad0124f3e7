/* SPDX-License-Identifier: MIT */
/*
 * npu.h's layouts and numbers as the C compiler sees them, one "name value"
 * line each, for tests/capi.rs to compare with the Rust side.
 */
#include <npu.h>
#include <stddef.h>
#include <stdio.h>

#define SHOW(x) printf("%s %lld\n", #x, (long long)(x))

int main(void)
{
	SHOW(sizeof(struct npu_device_info));
	SHOW(offsetof(struct npu_device_info, backend));
	SHOW(offsetof(struct npu_device_info, sram_size));
	SHOW(offsetof(struct npu_device_info, job_timeout_ms));
	SHOW(offsetof(struct npu_device_info, va_start));
	SHOW(offsetof(struct npu_device_info, va_end));
	SHOW(sizeof(struct npu_tensor_info));
	SHOW(offsetof(struct npu_tensor_info, dtype));
	SHOW(offsetof(struct npu_tensor_info, name));
	SHOW(offsetof(struct npu_tensor_info, rank));
	SHOW(offsetof(struct npu_tensor_info, shape));
	SHOW(offsetof(struct npu_tensor_info, bytes));
	SHOW(offsetof(struct npu_tensor_info, scale));
	SHOW(offsetof(struct npu_tensor_info, zero_point));
	SHOW(offsetof(struct npu_tensor_info, quant_axis));
	SHOW(sizeof(enum npu_status));
	SHOW(NPU_MAX_RANK);
	SHOW(NPU_ERROR_INVALID_ARGUMENT);
	SHOW(NPU_ERROR_NOT_FOUND);
	SHOW(NPU_ERROR_UNSUPPORTED);
	SHOW(NPU_ERROR_PARSE);
	SHOW(NPU_ERROR_COMPILE);
	SHOW(NPU_ERROR_DEVICE);
	SHOW(NPU_ERROR_JOB_FAULT);
	SHOW(NPU_ERROR_TIMEOUT);
	SHOW(NPU_ERROR_BUSY);
	SHOW(NPU_ERROR_IO);
	SHOW(NPU_ERROR_INTERNAL);
	SHOW(NPU_FAULT_MMU_UNMAPPED);
	SHOW(NPU_FAULT_MMU_PERMISSION);
	SHOW(NPU_FAULT_MMU_VA_RANGE);
	SHOW(NPU_FAULT_BAD_OPCODE);
	SHOW(NPU_FAULT_BAD_OPERAND);
	SHOW(NPU_FAULT_SRAM_RANGE);
	SHOW(NPU_FAULT_CMDBUF_OVERRUN);
	SHOW(NPU_FAULT_BAD_CONTEXT);
	SHOW(NPU_FAULT_DMA_BUS_ERROR);
	SHOW(NPU_FAULT_BAD_SUBMISSION);
	SHOW(NPU_FAULT_ABORTED);
	SHOW(NPU_FAULT_INDEX_RANGE);
	SHOW(NPU_DTYPE_F32);
	SHOW(NPU_DTYPE_I8);
	SHOW(NPU_DTYPE_I32);
	SHOW(NPU_DTYPE_U8);
	SHOW(NPU_DTYPE_F16);
	SHOW(NPU_DTYPE_BF16);
	return 0;
}
