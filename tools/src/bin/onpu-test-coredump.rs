//! kselftest for the onpu driver's device coredumps
//! (Documentation/driver/onpu.rst, "Device coredumps"). TAP output; run in
//! the guest with the driver loaded.
//!
//! A job that faults leaves a dump of the job and the device's registers
//! in /sys/class/devcoredump/devcdN/data (the kernel's devcoredump class,
//! Documentation/driver-api/devcoredump in the kernel). What each dump
//! must say follows from the hardware spec (Documentation/hw/npu-hw.rst,
//! "Fault codes", "Submission ring", "Completion ring") and from what this
//! test submitted, never from the driver's code:
//!
//! 1. An undefined opcode at a known offset of a command buffer that starts
//!    at a known offset of its object: status BAD_OPCODE (4), the
//!    instruction's byte offset as the fault address, the instruction's 64
//!    bytes exactly as written, the ring entry naming the command buffer's
//!    NPU address and size, the completion record with the status.
//! 2. Writing to the dump's data file dismisses it; a second fault, a DMA
//!    load from an unmapped NPU address, gives a new dump naming
//!    MMU_UNMAPPED (1), that address and FAULT_ADDR, and no instruction.
//! 3. A job that hangs (the device server's `--inject hang:tag=57005`) and
//!    is timed out by the watchdog gives a dump naming TIMEDOUT.
//!
//! runs.list: rules-basic and rules-debug (their device server hangs on
//! MARK 0xdead). Without the injection the last test is skipped, which
//! counts as a failure of the run.

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Insn, Strided, INSN_SIZE};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SEC: i64 = 1_000_000_000;
const CLASS: &str = "/sys/class/devcoredump";
/// How long a dump may take to appear (or to go once dismissed): the
/// driver makes it from a work item after the job's fence signalled.
const DUMP_DEADLINE: Duration = Duration::from_secs(10);
/// MARK tag on which the device hangs (runs.list: hang:tag=57005).
const HANG_TAG: u32 = 0xdead;
const CAPS_FAULT_INJECTION: u64 = 1 << 31;
/// Fault codes ("Fault codes" in the hardware spec).
const MMU_UNMAPPED: u32 = 1;
const BAD_OPCODE: u32 = 4;
/// An opcode the ISA does not define (0x00-0x03, 0x10-0x13, 0x20-0x22,
/// 0x30-0x33 are; 0x14, 0x15 and 0x34 are being claimed).
const UNDEFINED_OPCODE: u8 = 0x7f;
/// An NPU address no object is mapped at: files get their addresses from
/// the bottom of the 39-bit space, which this test never fills.
const UNMAPPED_VA: u64 = 0x40_1234_5000;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

struct Dev {
    file: File,
    /// The PCI device behind the accel node (what a dump's failing_device
    /// links to).
    pci: PathBuf,
}

impl Dev {
    fn open() -> Result<Dev, String> {
        let path = accel::find_device().map_err(|e| e.to_string())?;
        let name = path
            .file_name()
            .ok_or_else(|| format!("{}: not a device node", path.display()))?;
        let class = Path::new("/sys/class/accel").join(name).join("device");
        let pci = std::fs::canonicalize(&class).map_err(|e| format!("{}: {e}", class.display()))?;
        Ok(Dev {
            file: accel::open_with_queue(&path).map_err(|e| e.to_string())?,
            pci,
        })
    }

    fn bo(&self, size: u64) -> Result<(Bo, u64), String> {
        let bo = accel::bo_create(&self.file, size)
            .map_err(|e| format!("bo_create: {}", errno_name(e)))?;
        let va = accel::bo_npu_addr(&self.file, bo.handle)
            .map_err(|e| format!("bo_info: {}", errno_name(e)))?;
        Ok((bo, va))
    }

    /// Submit `size` bytes of `bo` from byte `offset` on; the job's seqno.
    fn submit(&self, bo: &Bo, offset: u64, size: u32, timeout_ms: u32) -> Result<u64, String> {
        let mut req = uapi::drm_onpu_submit {
            queue_id: accel::FIRST_QUEUE,
            cmdbuf_handle: bo.handle,
            cmdbuf_size: size,
            cmdbuf_offset: offset,
            timeout_ms,
            ..Default::default()
        };
        accel::submit(&self.file, &mut req).map_err(|e| format!("submit: {}", errno_name(e)))
    }

    fn wait(&self, seqno: u64) -> Result<uapi::drm_onpu_wait, String> {
        accel::wait(&self.file, seqno, 30 * SEC)
            .map_err(|e| format!("wait for job {seqno}: {}", errno_name(e)))
    }
}

/// The dumps of the kernel's devcoredump class that name `pci` as their
/// failing device.
fn dumps_of(pci: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = match std::fs::read_dir(CLASS) {
        Ok(d) => d,
        // The class directory exists once the core made its first dump.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{CLASS}: {e}")),
    };
    let mut dumps = Vec::new();
    for e in dir.flatten() {
        let failing = std::fs::canonicalize(e.path().join("failing_device"));
        if failing.as_deref().ok() == Some(pci) {
            dumps.push(e.path());
        }
    }
    dumps.sort();
    Ok(dumps)
}

/// Dismiss every dump of the device (write to its data file) and wait until
/// the core has removed them: while one exists, it drops new ones.
fn dismiss_all(d: &Dev) -> Result<(), String> {
    for dump in dumps_of(&d.pci)? {
        let data = dump.join("data");
        // Gone in between: fine.
        let _ = std::fs::write(&data, "1");
    }
    let start = Instant::now();
    loop {
        let left = dumps_of(&d.pci)?;
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() > DUMP_DEADLINE {
            return Err(format!("dismissed dumps still there: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait for the device's dump to appear and read it: its directory and
/// text.
fn wait_for_dump(d: &Dev) -> Result<(PathBuf, String), String> {
    let start = Instant::now();
    loop {
        if let Some(dump) = dumps_of(&d.pci)?.into_iter().next() {
            let data = dump.join("data");
            let bytes = std::fs::read(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            let text =
                String::from_utf8(bytes).map_err(|_| format!("{}: not text", data.display()))?;
            return Ok((dump, text));
        }
        if start.elapsed() > DUMP_DEADLINE {
            return Err(format!(
                "no dump of {} in {CLASS} within {DUMP_DEADLINE:?}",
                d.pci.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The value of the dump's `key: value` line; exactly one such line.
fn field<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
    let mut values = text.lines().filter_map(|l| {
        l.split_once(": ")
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    });
    let value = values
        .next()
        .ok_or_else(|| format!("the dump has no '{key}' line:\n{text}"))?;
    if values.next().is_some() {
        return Err(format!("the dump has several '{key}' lines"));
    }
    Ok(value)
}

fn expect(text: &str, key: &str, want: &str) -> Result<(), String> {
    let got = field(text, key)?;
    if got != want {
        return Err(format!("{key}: got '{got}', want '{want}'"));
    }
    Ok(())
}

/// A hex dump value (`b0 b1 ...`) as bytes.
fn hex_bytes(text: &str, key: &str) -> Result<Vec<u8>, String> {
    field(text, key)?
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).map_err(|_| format!("{key}: bad byte '{b}'")))
        .collect()
}

/// A register's value (`0x........ @0x....`).
fn register(text: &str, name: &str) -> Result<u32, String> {
    let key = format!("reg.{name}");
    let v = field(text, &key)?;
    let v = v.split(' ').next().unwrap_or("");
    u32::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| format!("{key}: '{v}'"))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from(le_u32(b, at)) | u64::from(le_u32(b, at + 4)) << 32
}

/// The undefined instruction: the opcode, then a pattern in every other
/// byte, so that each of the 64 bytes is checked.
fn bad_instruction() -> [u8; INSN_SIZE] {
    let mut insn = [0u8; INSN_SIZE];
    for (i, b) in insn.iter_mut().enumerate() {
        *b = (0xa0 + i as u8) ^ 0x5c;
    }
    insn[0] = UNDEFINED_OPCODE;
    insn
}

/// 1. A job whose command buffer starts 4 KiB into its object and holds two
///    good instructions, then an undefined opcode (byte offset 128), then
///    END.
fn bad_opcode_dump(d: &Dev) -> Result<(), String> {
    const START: u64 = 4096;
    const BAD_AT: usize = 2 * INSN_SIZE;
    dismiss_all(d)?;
    let (bo, va) = d.bo(3 * 4096)?;
    let mut code = assemble(&[
        Insn::Fill {
            dst: 0,
            len: 64,
            pattern: 0x0102_0304,
        },
        Insn::Nop,
    ]);
    let insn = bad_instruction();
    code.extend_from_slice(&insn);
    code.extend_from_slice(&assemble(&[Insn::End]));
    {
        let mut m = Mapping::new(&d.file, &bo).map_err(|e| e.to_string())?;
        let s = m.as_mut_slice();
        // Bytes before the command buffer must not be taken for it.
        s[..START as usize].fill(0xee);
        s[START as usize..START as usize + code.len()].copy_from_slice(&code);
    }
    let size = code.len() as u32;
    let seqno = d.submit(&bo, START, size, 0)?;
    let w = d.wait(seqno)?;
    if w.status != BAD_OPCODE || w.fault_addr != BAD_AT as u64 {
        return Err(format!(
            "the job ended with status {:#x} at {:#x}, want BAD_OPCODE (4) at {BAD_AT:#x}",
            w.status, w.fault_addr
        ));
    }
    let (_, text) = wait_for_dump(d)?;
    expect(&text, "reason", "job_fault")?;
    expect(&text, "job.seqno", &seqno.to_string())?;
    expect(&text, "job.pid", &std::process::id().to_string())?;
    expect(&text, "job.queue", &accel::FIRST_QUEUE.to_string())?;
    expect(&text, "job.status", "0x4")?;
    expect(&text, "job.status_name", "BAD_OPCODE")?;
    expect(&text, "job.fault_addr", &format!("{BAD_AT:#x}"))?;
    expect(&text, "job.cmdbuf", &format!("{:#x}", va + START))?;
    expect(&text, "job.cmdbuf_size", &size.to_string())?;
    expect(&text, "job.instruction_offset", &format!("{BAD_AT:#x}"))?;
    let dumped = hex_bytes(&text, "job.instruction")?;
    if dumped != insn {
        return Err(format!(
            "job.instruction differs from the submitted one:\n got  {dumped:02x?}\n want {insn:02x?}"
        ));
    }
    // The submission-ring entry ("Submission ring"): seqno, cmdbuf, size.
    let entry = hex_bytes(&text, "job.ring_entry")?;
    if entry.len() != 64 {
        return Err(format!("job.ring_entry has {} bytes, want 64", entry.len()));
    }
    if le_u64(&entry, 8) != va + START || le_u32(&entry, 16) != size {
        return Err(format!(
            "job.ring_entry names cmdbuf {:#x} size {}, want {:#x} size {size}",
            le_u64(&entry, 8),
            le_u32(&entry, 16),
            va + START
        ));
    }
    // The completion record ("Completion ring"): status, fault_addr, the
    // ring entry's seqno.
    let record = hex_bytes(&text, "job.completion_record")?;
    if record.len() != 32 {
        return Err(format!(
            "job.completion_record has {} bytes, want 32",
            record.len()
        ));
    }
    if le_u64(&record, 0) != le_u64(&entry, 0)
        || le_u32(&record, 8) != BAD_OPCODE
        || le_u64(&record, 16) != BAD_AT as u64
    {
        return Err(format!(
            "job.completion_record {record:02x?} does not match the fault"
        ));
    }
    // The device's fault registers name the last failed job: this one.
    let fault_status = register(&text, "FAULT_STATUS")?;
    let fault_addr = u64::from(register(&text, "FAULT_ADDR_LO")?)
        | u64::from(register(&text, "FAULT_ADDR_HI")?) << 32;
    if fault_status != BAD_OPCODE || fault_addr != BAD_AT as u64 {
        return Err(format!(
            "FAULT_STATUS {fault_status:#x} FAULT_ADDR {fault_addr:#x}, want 4 and {BAD_AT:#x}"
        ));
    }
    expect(&text, "reg.ID", "0x4f4e5055 @0x0000")?;
    // For the log: what a dump looks like (the registers left out).
    for line in text.lines().filter(|l| !l.starts_with("reg.")) {
        println!("# {line}");
    }
    Ok(())
}

/// 2. Dismissing the dump removes it; a DMA load from an unmapped address
///    then gives a new one.
fn mmu_fault_new_dump(d: &Dev) -> Result<(), String> {
    let first = dumps_of(&d.pci)?;
    if first.is_empty() {
        return Err("no dump left by the first fault to dismiss".into());
    }
    dismiss_all(d)?;
    let (bo, _) = d.bo(4096)?;
    let row = Strided::contiguous(256);
    let code = assemble(&[
        Insn::DmaLoad {
            va: UNMAPPED_VA,
            sram: 0,
            mem: row,
            sram_layout: row,
        },
        Insn::End,
    ]);
    Mapping::new(&d.file, &bo)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let seqno = d.submit(&bo, 0, code.len() as u32, 0)?;
    let w = d.wait(seqno)?;
    if w.status != MMU_UNMAPPED || w.fault_addr != UNMAPPED_VA {
        return Err(format!(
            "the job ended with status {:#x} at {:#x}, want MMU_UNMAPPED (1) at {UNMAPPED_VA:#x}",
            w.status, w.fault_addr
        ));
    }
    let (_, text) = wait_for_dump(d)?;
    expect(&text, "reason", "job_fault")?;
    expect(&text, "job.seqno", &seqno.to_string())?;
    expect(&text, "job.status", "0x1")?;
    expect(&text, "job.status_name", "MMU_UNMAPPED")?;
    expect(&text, "job.fault_addr", &format!("{UNMAPPED_VA:#x}"))?;
    let fault_addr = u64::from(register(&text, "FAULT_ADDR_LO")?)
        | u64::from(register(&text, "FAULT_ADDR_HI")?) << 32;
    if register(&text, "FAULT_STATUS")? != MMU_UNMAPPED || fault_addr != UNMAPPED_VA {
        return Err(format!(
            "FAULT_STATUS/FAULT_ADDR {:#x}/{fault_addr:#x}, want 1/{UNMAPPED_VA:#x}",
            register(&text, "FAULT_STATUS")?
        ));
    }
    // An MMU fault's address is an NPU address, not an instruction's.
    if field(&text, "job.instruction").is_ok() {
        return Err("an MMU fault's dump names an instruction".into());
    }
    Ok(())
}

/// 3. A hung job the watchdog times out: the dump says so.
fn timeout_dump(d: &Dev) -> Result<(), String> {
    dismiss_all(d)?;
    let (bo, _) = d.bo(4096)?;
    let code = assemble(&[Insn::Mark { tag: HANG_TAG }, Insn::End]);
    Mapping::new(&d.file, &bo)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let seqno = d.submit(&bo, 0, code.len() as u32, 300)?;
    let w = d.wait(seqno)?;
    if w.status != uapi::DRM_ONPU_JOB_TIMEDOUT {
        return Err(format!(
            "the hung job ended with status {:#x}, want TIMEDOUT: is hang:tag=57005 armed?",
            w.status
        ));
    }
    let (_, text) = wait_for_dump(d)?;
    expect(&text, "reason", "job_timeout")?;
    expect(&text, "job.seqno", &seqno.to_string())?;
    expect(&text, "job.status_name", "TIMEDOUT")?;
    expect(&text, "job.timeout_ms", "300")?;
    dismiss_all(d)
}

type Test = fn(&Dev) -> Result<(), String>;

fn main() {
    let mut tap = Tap::new(3);
    let d = match Dev::open() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("onpu-test-coredump: {e}");
            std::process::exit(1);
        }
    };
    let injecting = accel::get_param(&d.file, uapi::DRM_ONPU_PARAM_CAPS)
        .map(|c| c & CAPS_FAULT_INJECTION != 0)
        .unwrap_or(false);
    let tests: [(&str, Test); 2] = [
        (
            "a bad opcode's dump names the fault and holds the instruction as submitted",
            bad_opcode_dump,
        ),
        (
            "a dismissed dump goes; an MMU fault gives a new one naming the address",
            mmu_fault_new_dump,
        ),
    ];
    for (name, test) in tests {
        tap.check(name, test(&d));
    }
    let name = "a job timed out by the watchdog gives a dump";
    if injecting {
        tap.check(name, timeout_dump(&d));
    } else {
        tap.skip(name, "device started without --inject hang:tag=57005");
    }
    std::process::exit(tap.finish());
}
