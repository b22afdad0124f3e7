// SPDX-License-Identifier: GPL-2.0-only

//! Device coredumps of failed jobs (Documentation/driver/onpu.rst, "Device
//! coredumps").
//!
//! Two halves, because the failure is seen on the fence-signalling path
//! (the IRQ thread, the watchdog), where nothing may allocate or take a
//! reservation lock:
//!
//! - [`Snapshot::capture`], on the signalling path, under the ring lock,
//!   before the job's fence signals and before a reset clears the fault
//!   registers: copies the registers, the job's ring entry and completion
//!   record into a snapshot that lives in the engine's ring state (memory
//!   allocated at probe) and takes a reference on the job's command buffer.
//! - [`Snapshot::to_text`], from a work item: formats the snapshot, reads the
//!   faulting instruction from the command buffer (a kernel mapping of the
//!   object: allocation, reservation lock) into a vmalloc'd buffer that goes
//!   to the device coredump core.

use core::fmt::{self, Write};

use kernel::{alloc::VVec, io::Io, prelude::*, sync::aref::ARef, transmute::AsBytes};

use crate::gem::BoObject;
use crate::hw::{Bar0, Params};
use crate::job::Job;
use crate::regs::*;
use crate::ring::{CqEntry, SqEntry};
use crate::uapi;

/// Bytes of one instruction (ISA 1.0).
const INSN_BYTES: usize = uapi::DRM_ONPU_INSN_SIZE as usize;

/// Fault codes whose address is the byte offset of an instruction in the
/// command buffer ("Fault codes" in the hardware spec).
const BAD_OPCODE: u32 = 4;
const BAD_OPERAND: u32 = 5;
const SRAM_RANGE: u32 = 6;

/// The registers a dump holds, in its order: every readable register of
/// the spec's register map, the rings' blocks last (ring 0's are the 1.0
/// registers). DOORBELL and IRQ_ACK are write-only.
const REGISTERS: &[(&str, usize)] = &[
    ("ID", ID),
    ("VERSION", VERSION),
    ("CAPS", CAPS),
    ("SRAM_SIZE", SRAM_SIZE),
    ("NUM_CONTEXTS", NUM_CONTEXTS),
    ("VA_BITS", VA_BITS),
    ("CLOCK_KHZ", CLOCK_KHZ),
    ("NUM_RINGS", NUM_RINGS),
    ("CONTROL", CONTROL),
    ("STATUS", STATUS),
    ("IRQ_STATUS", IRQ_STATUS),
    ("IRQ_MASK", IRQ_MASK),
    ("SQ_BASE_LO", SQ_BASE_LO),
    ("SQ_BASE_HI", SQ_BASE_HI),
    ("SQ_SIZE", SQ_SIZE),
    ("SQ_HEAD", SQ_HEAD),
    ("SQ_TAIL", SQ_TAIL),
    ("CQ_BASE_LO", CQ_BASE_LO),
    ("CQ_BASE_HI", CQ_BASE_HI),
    ("CQ_SIZE", CQ_SIZE),
    ("CQ_HEAD", CQ_HEAD),
    ("CQ_TAIL", CQ_TAIL),
    ("CTX_TABLE_LO", CTX_TABLE_LO),
    ("CTX_TABLE_HI", CTX_TABLE_HI),
    ("SHADOW_LO", SHADOW_LO),
    ("SHADOW_HI", SHADOW_HI),
    ("FAULT_STATUS", FAULT_STATUS),
    ("FAULT_CONTEXT", FAULT_CONTEXT),
    ("FAULT_ADDR_LO", FAULT_ADDR_LO),
    ("FAULT_ADDR_HI", FAULT_ADDR_HI),
    ("RING_ERROR", RING_ERROR),
    ("RING_ERROR_VALUE", RING_ERROR_VALUE),
    ("COST_DMA_BYTES_PER_CYCLE", COST_BASE),
    ("COST_DMA_LATENCY", COST_BASE + 0x04),
    ("COST_F32_MACS_PER_CYCLE", COST_BASE + 0x08),
    ("COST_I8_MACS_PER_CYCLE", COST_BASE + 0x0c),
    ("COST_VECTOR_ELEMS_PER_CYCLE", COST_BASE + 0x10),
    ("COST_SPECIAL_ELEMS_PER_CYCLE", COST_BASE + 0x14),
    ("COST_INSN_OVERHEAD", COST_BASE + 0x18),
    ("COST_WALK_CYCLES", COST_BASE + 0x1c),
    ("PERF_JOBS_DONE_LO", PERF_BASE),
    ("PERF_JOBS_DONE_HI", PERF_BASE + 0x04),
    ("PERF_JOBS_FAULTED_LO", PERF_BASE + 0x08),
    ("PERF_JOBS_FAULTED_HI", PERF_BASE + 0x0c),
    ("PERF_BUSY_CYCLES_LO", PERF_BASE + 0x10),
    ("PERF_BUSY_CYCLES_HI", PERF_BASE + 0x14),
    ("PERF_DMA_BYTES_READ_LO", PERF_BASE + 0x18),
    ("PERF_DMA_BYTES_READ_HI", PERF_BASE + 0x1c),
    ("PERF_DMA_BYTES_WRITTEN_LO", PERF_BASE + 0x20),
    ("PERF_DMA_BYTES_WRITTEN_HI", PERF_BASE + 0x24),
    ("PERF_MACS_LO", PERF_BASE + 0x28),
    ("PERF_MACS_HI", PERF_BASE + 0x2c),
    ("PERF_INSTRUCTIONS_LO", PERF_BASE + 0x30),
    ("PERF_INSTRUCTIONS_HI", PERF_BASE + 0x34),
    ("PERF_IRQS_SENT_LO", PERF_BASE + 0x38),
    ("PERF_IRQS_SENT_HI", PERF_BASE + 0x3c),
];

/// The registers of each ring block (`RING_BASE + RING_STRIDE * n`), read
/// for rings 1 up to NUM_RINGS - 1.
const RING_REGISTERS: &[(&str, usize)] = &[
    ("SQ_BASE_LO", 0x00),
    ("SQ_BASE_HI", 0x04),
    ("SQ_SIZE", 0x08),
    ("SQ_HEAD", 0x0c),
    ("SQ_TAIL", 0x10),
];
/// Rings the spec defines blocks for.
const MAX_RINGS: usize = 4;
const MAX_REGISTERS: usize = REGISTERS.len() + (MAX_RINGS - 1) * RING_REGISTERS.len();

/// Why the dump was taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A job ended with a fault code in its completion record.
    JobFault,
    /// The oldest job ran past its timeout: the watchdog resets the device.
    Timeout,
    /// STATUS.HALTED (DEVICE_ERROR): the device is reset.
    DeviceHalted,
    /// A completion record named a later job than the oldest in flight:
    /// the device is reset.
    OutOfOrder,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::JobFault => "job_fault",
            Reason::Timeout => "job_timeout",
            Reason::DeviceHalted => "device_halted",
            Reason::OutOfOrder => "completion_out_of_order",
        }
    }
}

/// The name of a job status: a device fault code or the driver's own.
fn status_name(status: u32) -> &'static str {
    match status {
        0 => "OK",
        1 => "MMU_UNMAPPED",
        2 => "MMU_PERMISSION",
        3 => "MMU_VA_RANGE",
        BAD_OPCODE => "BAD_OPCODE",
        BAD_OPERAND => "BAD_OPERAND",
        SRAM_RANGE => "SRAM_RANGE",
        7 => "CMDBUF_OVERRUN",
        8 => "BAD_CONTEXT",
        9 => "DMA_BUS_ERROR",
        10 => "BAD_SUBMISSION",
        11 => "ABORTED",
        uapi::DRM_ONPU_JOB_TIMEDOUT => "TIMEDOUT",
        uapi::DRM_ONPU_JOB_CANCELED => "CANCELED",
        _ => "unknown",
    }
}

/// The job the failure is about (the oldest in the ring).
struct JobState {
    /// The file's number of the job (SUBMIT's seqno; 0 for the kernel's).
    seqno: u64,
    ring_seqno: u64,
    /// The hardware context (slot) it ran on.
    hw_context: u16,
    /// The software context (address space) id; 0 for the kernel's jobs.
    address_space: u64,
    queue_id: u32,
    priority: u32,
    pid: i32,
    cmdbuf: u64,
    cmdbuf_size: u32,
    timeout_ms: u32,
    /// Its submission-ring entry as the device read it (ring memory).
    ring_entry: Option<SqEntry>,
    /// Its completion record, when the device wrote one.
    record: Option<CqEntry>,
    /// How the job ends: status and fault address.
    status: u32,
    fault_addr: u64,
    /// The command buffer object and the offset of the command buffer in
    /// it (user jobs).
    cmd: Option<(ARef<BoObject>, u64)>,
}

/// What a failure left in the device and the ring, copied on the
/// signalling path. Owns nothing but a reference on the command buffer,
/// which must be dropped outside the signalling path.
pub(crate) struct Snapshot {
    reason: Reason,
    registers: [u32; MAX_REGISTERS],
    /// Ring blocks read (NUM_RINGS - 1, at most MAX_RINGS - 1).
    extra_rings: usize,
    job: Option<JobState>,
}

impl Snapshot {
    /// Copy the registers and what is known of `job` (the oldest job in
    /// the ring, whose entry is `ring_entry` and record `record`), which
    /// ends with `status` at `fault_addr`. Signalling path: allocates
    /// nothing, waits for nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn capture(
        reason: Reason,
        bar: &Bar0,
        params: &Params,
        job: Option<&Job>,
        ring_entry: Option<SqEntry>,
        record: Option<CqEntry>,
        status: u32,
        fault_addr: u64,
    ) -> Self {
        // Offsets from tables: checked at run time (all are inside BAR0; a
        // read that could not be made shows as all ones).
        let read = |offset: usize| bar.try_read32(offset).unwrap_or(u32::MAX);
        let mut registers = [0u32; MAX_REGISTERS];
        for (value, &(_, offset)) in registers.iter_mut().zip(REGISTERS.iter()) {
            *value = read(offset);
        }
        let extra_rings = (params.num_rings as usize).clamp(1, MAX_RINGS) - 1;
        let ring_values = registers[REGISTERS.len()..].chunks_exact_mut(RING_REGISTERS.len());
        for (n, values) in ring_values.take(extra_rings).enumerate() {
            for (value, &(_, offset)) in values.iter_mut().zip(RING_REGISTERS.iter()) {
                *value = read(RING_BASE + RING_STRIDE * (n + 1) + offset);
            }
        }
        let job = job.map(|job| JobState {
            seqno: job.seqno,
            ring_seqno: job.ring_seqno(),
            hw_context: job.context(),
            address_space: job.vm().map_or(0, |vm| vm.id()),
            queue_id: job.queue_id,
            priority: job.priority(),
            pid: job.pid,
            cmdbuf: job.cmdbuf,
            cmdbuf_size: job.size,
            timeout_ms: job.timeout_ms,
            ring_entry,
            record,
            status,
            fault_addr,
            cmd: job.command_buffer(),
        });
        Self {
            reason,
            registers,
            extra_rings,
            job,
        }
    }

    /// The dump's text (Documentation/driver/onpu.rst, "Device coredumps"),
    /// in a vmalloc'd buffer for the devcoredump core. Process context: it
    /// allocates and maps the command buffer.
    pub(crate) fn to_text(&self) -> Result<VVec<u8>> {
        let mut out = Text(VVec::with_capacity(8192, GFP_KERNEL)?);
        self.write(&mut out).map_err(|_| ENOMEM)?;
        Ok(out.0)
    }

    fn write(&self, out: &mut Text) -> fmt::Result {
        writeln!(out, "onpu_coredump: 1")?;
        writeln!(out, "reason: {}", self.reason.name())?;
        if let Some(job) = &self.job {
            write_job(out, job)?;
        } else {
            writeln!(out, "job: none")?;
        }
        for (&(name, offset), value) in REGISTERS.iter().zip(self.registers.iter()) {
            writeln!(out, "reg.{name}: {value:#010x} @{offset:#06x}")?;
        }
        let ring_values = self.registers[REGISTERS.len()..].chunks_exact(RING_REGISTERS.len());
        for (n, values) in ring_values.take(self.extra_rings).enumerate() {
            let block = RING_BASE + RING_STRIDE * (n + 1);
            for (&(name, offset), value) in RING_REGISTERS.iter().zip(values.iter()) {
                writeln!(
                    out,
                    "reg.RING{}_{name}: {value:#010x} @{:#06x}",
                    n + 1,
                    block + offset
                )?;
            }
        }
        Ok(())
    }
}

fn write_job(out: &mut Text, job: &JobState) -> fmt::Result {
    writeln!(out, "job.seqno: {}", job.seqno)?;
    writeln!(out, "job.ring_seqno: {}", job.ring_seqno)?;
    writeln!(out, "job.pid: {}", job.pid)?;
    writeln!(out, "job.queue: {}", job.queue_id)?;
    writeln!(out, "job.priority: {}", job.priority)?;
    writeln!(out, "job.address_space: {}", job.address_space)?;
    writeln!(out, "job.hw_context: {}", job.hw_context)?;
    writeln!(out, "job.cmdbuf: {:#x}", job.cmdbuf)?;
    writeln!(out, "job.cmdbuf_size: {}", job.cmdbuf_size)?;
    writeln!(out, "job.timeout_ms: {}", job.timeout_ms)?;
    writeln!(out, "job.status: {:#x}", job.status)?;
    writeln!(out, "job.status_name: {}", status_name(job.status))?;
    writeln!(out, "job.fault_addr: {:#x}", job.fault_addr)?;
    if let Some(entry) = &job.ring_entry {
        write_hex(out, "job.ring_entry", entry.as_bytes())?;
    }
    if let Some(record) = &job.record {
        write_hex(out, "job.completion_record", record.as_bytes())?;
    }
    // A command fault's address is the byte offset of the instruction in
    // the command buffer.
    if !matches!(job.status, BAD_OPCODE | BAD_OPERAND | SRAM_RANGE) {
        return Ok(());
    }
    writeln!(out, "job.instruction_offset: {:#x}", job.fault_addr)?;
    match read_instruction(job) {
        Ok(insn) => write_hex(out, "job.instruction", &insn),
        Err(why) => writeln!(out, "job.instruction: unavailable ({why})"),
    }
}

/// The 64 bytes at the fault's offset in the job's command buffer.
fn read_instruction(job: &JobState) -> core::result::Result<[u8; INSN_BYTES], &'static str> {
    let Some((bo, start)) = &job.cmd else {
        return Err("no command buffer object");
    };
    let end = job
        .fault_addr
        .checked_add(INSN_BYTES as u64)
        .ok_or("offset out of range")?;
    if end > u64::from(job.cmdbuf_size) {
        return Err("offset outside the command buffer");
    }
    // Its NPU pages are the pinned user pages, not the object's own.
    if bo.user_pages().is_some() {
        return Err("userptr object");
    }
    let offset = start
        .checked_add(job.fault_addr)
        .ok_or("offset out of range")?;
    let offset = usize::try_from(offset).map_err(|_| "offset out of range")?;
    let mut insn = [0u8; INSN_BYTES];
    bo.read(offset, &mut insn)
        .map_err(|_| "the object could not be read")?;
    Ok(insn)
}

/// `key: b0 b1 ...`, the bytes in hex, in memory order.
fn write_hex(out: &mut Text, key: &str, bytes: &[u8]) -> fmt::Result {
    write!(out, "{key}:")?;
    for b in bytes {
        write!(out, " {b:02x}")?;
    }
    writeln!(out)
}

/// The dump's text as it is written.
struct Text(VVec<u8>);

impl Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }
}
