//! BAR0 register offsets and bits (Documentation/hw/npu-hw.rst).

pub const BAR0_SIZE: u64 = 64 * 1024;
pub const BAR2_SIZE: u64 = 4096;
pub const MSIX_PBA_OFFSET: u32 = 0x800;
pub const MSIX_VECTORS: u16 = 2;
pub const VECTOR_JOB: u16 = 0;
pub const VECTOR_ERROR: u16 = 1;

pub const ID: u32 = 0x0000;
pub const VERSION: u32 = 0x0004;
pub const CAPS: u32 = 0x0008;
pub const SRAM_SIZE: u32 = 0x000c;
pub const NUM_CONTEXTS: u32 = 0x0010;
pub const VA_BITS: u32 = 0x0014;
pub const CLOCK_KHZ: u32 = 0x0018;
/// Number of submission rings (device 1.1).
pub const NUM_RINGS: u32 = 0x001c;
pub const CONTROL: u32 = 0x0020;
pub const STATUS: u32 = 0x0024;
pub const IRQ_STATUS: u32 = 0x0030;
pub const IRQ_MASK: u32 = 0x0034;
pub const IRQ_ACK: u32 = 0x0038;
pub const SQ_BASE_LO: u32 = 0x0040;
pub const SQ_BASE_HI: u32 = 0x0044;
pub const SQ_SIZE: u32 = 0x0048;
pub const SQ_HEAD: u32 = 0x004c;
pub const SQ_TAIL: u32 = 0x0050;
pub const DOORBELL: u32 = 0x0054;
pub const CQ_BASE_LO: u32 = 0x0058;
pub const CQ_BASE_HI: u32 = 0x005c;
pub const CQ_SIZE: u32 = 0x0060;
pub const CQ_HEAD: u32 = 0x0064;
pub const CQ_TAIL: u32 = 0x0068;
pub const CTX_TABLE_LO: u32 = 0x0070;
pub const CTX_TABLE_HI: u32 = 0x0074;
/// Shadow doorbell page (CAP_SHADOW_DOORBELL), bus address, 4 KiB aligned.
pub const SHADOW_LO: u32 = 0x0078;
pub const SHADOW_HI: u32 = 0x007c;
pub const FAULT_STATUS: u32 = 0x0080;
pub const FAULT_CONTEXT: u32 = 0x0084;
pub const FAULT_ADDR_LO: u32 = 0x0088;
pub const FAULT_ADDR_HI: u32 = 0x008c;
/// Rejected ring-pointer writes (write 1s to clear), and the last value.
pub const RING_ERROR: u32 = 0x0090;
pub const RING_ERROR_VALUE: u32 = 0x0094;
/// Cost-model parameters, read-only (see `cost::CostModel`).
pub const COST_BASE: u32 = 0x00c0;
/// 64-bit performance counters, LO/HI pairs (see `PerfCounter`).
pub const PERF_BASE: u32 = 0x0100;

/// Per-ring register blocks (device 1.1): ring n's block is at
/// `RING_BLOCK_BASE + RING_BLOCK_STRIDE * n`; ring 0's block aliases the
/// 1.0 registers SQ_BASE_LO..DOORBELL.
pub const RING_BLOCK_BASE: u32 = 0x0200;
pub const RING_BLOCK_STRIDE: u32 = 0x20;
/// Offsets inside a ring block.
pub const RING_SQ_BASE_LO: u32 = 0x00;
pub const RING_SQ_BASE_HI: u32 = 0x04;
pub const RING_SQ_SIZE: u32 = 0x08;
pub const RING_SQ_HEAD: u32 = 0x0c;
pub const RING_SQ_TAIL: u32 = 0x10;
pub const RING_DOORBELL: u32 = 0x14;

/// Number of rings and the value of NUM_RINGS; ring n has priority n.
pub const RINGS: usize = 4;

/// The BAR0 offset of register `reg` (RING_*) of ring `ring`.
pub const fn ring_reg(ring: usize, reg: u32) -> u32 {
    RING_BLOCK_BASE + RING_BLOCK_STRIDE * ring as u32 + reg
}

/// The (ring, RING_* register) a BAR0 offset names, for both ring 0's 1.0
/// registers and every ring block.
pub const fn ring_reg_of(offset: u32) -> Option<(usize, u32)> {
    let (ring, reg) = if offset >= SQ_BASE_LO && offset <= DOORBELL {
        (0, offset - SQ_BASE_LO)
    } else if offset >= RING_BLOCK_BASE
        && offset < RING_BLOCK_BASE + RING_BLOCK_STRIDE * RINGS as u32
    {
        (
            ((offset - RING_BLOCK_BASE) / RING_BLOCK_STRIDE) as usize,
            (offset - RING_BLOCK_BASE) % RING_BLOCK_STRIDE,
        )
    } else {
        return None;
    };
    if reg <= RING_DOORBELL && reg % 4 == 0 {
        Some((ring, reg))
    } else {
        None
    }
}

pub const ID_VALUE: u32 = 0x4f4e_5055; // "ONPU"
/// VERSION 1.5: register interface 1.1 (rings with priorities, job
/// profiles) and the ISA 1.5 instructions (1.2: UNARY 7..16, prelu, GATHER;
/// 1.3: comparisons and logic BINARY 7..15, SELECT; 1.4: CONVERT to and from
/// f16/bf16; 1.5: POOL_I8; 1.6: completion interrupts by event index,
/// CAPS.CQ_EVENT). The ISA crate owns the number.
pub const VERSION_VALUE: u32 = npu_isa::ISA_VERSION;
pub const VA_BITS_VALUE: u32 = 39;
pub const CLOCK_KHZ_VALUE: u32 = 1_000_000; // a modelled 1 GHz

pub const CONTROL_ENABLE: u32 = 1 << 0;
pub const CONTROL_SOFT_RESET: u32 = 1 << 1;
/// Completion interrupts by event index (CAP_CQ_EVENT, device 1.6).
pub const CONTROL_CQ_EVENT: u32 = 1 << 2;

pub const STATUS_ENABLED: u32 = 1 << 0;
pub const STATUS_RESET_DONE: u32 = 1 << 1;
pub const STATUS_BUSY: u32 = 1 << 2;
pub const STATUS_HALTED: u32 = 1 << 3;

pub const IRQ_JOB_DONE: u32 = 1 << 0;
pub const IRQ_JOB_FAULT: u32 = 1 << 1;
pub const IRQ_MMU_FAULT: u32 = 1 << 2;
pub const IRQ_RESET_DONE: u32 = 1 << 3;
pub const IRQ_DEVICE_ERROR: u32 = 1 << 4;
pub const IRQ_RING_ERROR: u32 = 1 << 5;
pub const IRQ_ALL: u32 = 0x3f;
pub const IRQ_BITS: u32 = 6;

/// RING_ERROR bits.
pub const RING_ERROR_DOORBELL: u32 = 1 << 0;
pub const RING_ERROR_CQ_HEAD: u32 = 1 << 1;
pub const RING_ERROR_SHADOW_SQ_TAIL: u32 = 1 << 2;
pub const RING_ERROR_SHADOW_CQ_HEAD: u32 = 1 << 3;

/// RING_ERROR bit of ring `n`'s DOORBELL: bit 0 for ring 0, 8 + n above.
pub const fn ring_error_doorbell(n: usize) -> u32 {
    if n == 0 {
        RING_ERROR_DOORBELL
    } else {
        1 << (8 + n)
    }
}

/// RING_ERROR bit of ring `n`'s shadow-page SQ_TAIL: bit 2 for ring 0,
/// 12 + n above.
pub const fn ring_error_shadow_tail(n: usize) -> u32 {
    if n == 0 {
        RING_ERROR_SHADOW_SQ_TAIL
    } else {
        1 << (12 + n)
    }
}

/// CAPS bits.
pub const CAP_F32: u32 = 1 << 0;
pub const CAP_INT8: u32 = 1 << 1;
pub const CAP_POOL: u32 = 1 << 2;
pub const CAP_SHADOW_DOORBELL: u32 = 1 << 3;
pub const CAP_MULTI_RING: u32 = 1 << 4;
pub const CAP_JOB_PROFILE: u32 = 1 << 5;
pub const CAP_CQ_EVENT: u32 = 1 << 6;
pub const CAP_FAULT_INJECTION: u32 = 1 << 31;

/// Words of the shadow doorbell page (byte offsets).
pub const SHADOW_SQ_TAIL: u64 = 0x0;
pub const SHADOW_SQ_EVENT: u64 = 0x4;
pub const SHADOW_CQ_HEAD: u64 = 0x8;

/// The shadow-page SQ_TAIL word of ring `n` (0x0 for ring 0, 0x10 + 8n).
pub const fn shadow_sq_tail(n: usize) -> u64 {
    if n == 0 {
        SHADOW_SQ_TAIL
    } else {
        0x10 + 8 * n as u64
    }
}

/// The shadow-page SQ_EVENT word of ring `n` (0x4 for ring 0, 0x14 + 8n).
pub const fn shadow_sq_event(n: usize) -> u64 {
    shadow_sq_tail(n) + 4
}

/// Submission entry flags (bytes 22..23).
pub const SQ_FLAG_PROFILE: u16 = 1 << 0;
/// Size (and alignment) of a job profile record.
pub const PROFILE_RECORD_SIZE: u64 = 64;

pub const SQ_ENTRY_SIZE: u64 = 64;
pub const CQ_ENTRY_SIZE: u64 = 32;
pub const CTX_DESC_SIZE: u64 = 16;
pub const RING_MIN: u32 = 2;
pub const RING_MAX: u32 = 4096;
/// Largest command buffer a submission may name.
pub const CMDBUF_MAX: u32 = 16 << 20;

/// The MSI-X vector that carries an IRQ_STATUS bit.
pub const fn vector_of(bit: u32) -> u16 {
    if bit == IRQ_JOB_DONE {
        VECTOR_JOB
    } else {
        VECTOR_ERROR
    }
}

/// Performance counters, in register order from PERF_BASE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum PerfCounter {
    JobsDone = 0,
    JobsFaulted,
    BusyCycles,
    DmaBytesRead,
    DmaBytesWritten,
    Macs,
    Instructions,
    IrqsSent,
}
pub const PERF_COUNTERS: usize = 8;
