//! onpu-test-ops: QUERY, GET_PARAM without the counters, the debugfs
//! counters in the accel minor's directory, and the wedged state.
//!
//! The expected values come from the specifications, not from the driver:
//! Documentation/hw/npu-hw.rst ("Register map", "Capabilities", "Cost
//! model") and Documentation/uapi/onpu.rst (QUERY's size protocol, the
//! parameter numbers, the limits).
//!
//! The last tests wedge the device: the device server must run with
//! `--inject hang-slow-reset=3000:tag=48879` (a job executing MARK 0xbeef
//! hangs, and the reset after it takes 3 s, longer than the driver waits),
//! then unbind and bind the driver again.

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Fault, Insn};
use npu_tools::copyjob;
use npu_tools::debugfs;
use npu_tools::kmod;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SEC: i64 = 1_000_000_000;
/// MARK tag of the job whose reset fails (runs.list: hang-slow-reset).
const WEDGE_TAG: u32 = 0xbeef;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

fn expect_errno<T: std::fmt::Debug>(r: Result<T, i32>, want: i32) -> Result<(), String> {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("got {}, want {}", errno_name(e), errno_name(want))),
        Ok(v) => Err(format!("succeeded ({v:?}), want {}", errno_name(want))),
    }
}

fn expect(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

/// A device file with a command-buffer object, used in 4 KiB slots taken
/// in turn: a job submitted right behind another must not overwrite the
/// commands the device has not fetched yet.
struct Ctx {
    file: File,
    cmd: Bo,
    next_slot: std::cell::Cell<u64>,
}

const CMD_SLOT: u64 = 4096;
const CMD_SLOTS: u64 = 16;

impl Ctx {
    fn open() -> Result<Ctx, String> {
        let path = kmod::wait_for_device()?;
        let file = accel::open_with_queue(&path).map_err(|e| e.to_string())?;
        let cmd = accel::bo_create(&file, 64 * 1024).map_err(errno_name)?;
        Ok(Ctx {
            file,
            cmd,
            next_slot: std::cell::Cell::new(0),
        })
    }

    fn submit(
        &self,
        insns: &[Insn],
        bos: &[(u32, u32)],
        timeout_ms: u32,
        out_syncobj: u32,
    ) -> Result<u64, i32> {
        let code = assemble(insns);
        let slot = self.next_slot.get();
        self.next_slot.set((slot + 1) % CMD_SLOTS);
        let offset = slot * CMD_SLOT;
        if code.len() as u64 > CMD_SLOT {
            return Err(libc::E2BIG);
        }
        Mapping::new(&self.file, &self.cmd)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?
            .as_mut_slice()[offset as usize..offset as usize + code.len()]
            .copy_from_slice(&code);
        let refs: Vec<_> = bos
            .iter()
            .map(|&(handle, flags)| uapi::drm_onpu_bo_ref { handle, flags })
            .collect();
        let outs: Vec<_> = (out_syncobj != 0)
            .then_some(uapi::drm_onpu_sync {
                handle: out_syncobj,
                ..Default::default()
            })
            .into_iter()
            .collect();
        let mut req = uapi::drm_onpu_submit {
            queue_id: accel::FIRST_QUEUE,
            cmdbuf_handle: self.cmd.handle,
            cmdbuf_offset: offset,
            cmdbuf_size: code.len() as u32,
            bos: accel::obj_array(&refs),
            out_syncs: accel::obj_array(&outs),
            timeout_ms,
            ..Default::default()
        };
        accel::submit(&self.file, &mut req)
    }

    fn run(&self, insns: &[Insn], bos: &[(u32, u32)]) -> Result<uapi::drm_onpu_wait, String> {
        let seqno = self
            .submit(insns, bos, 0, 0)
            .map_err(|e| format!("submit: {}", errno_name(e)))?;
        accel::wait(&self.file, seqno, 10 * SEC).map_err(|e| format!("wait: {}", errno_name(e)))
    }
}

/// QUERY with `size` bytes at a buffer pre-filled with 0xaa (or a null
/// pointer for size 0): the size returned and the buffer.
fn query_into(file: &File, query: u32, size: usize) -> Result<(u32, Vec<u8>), i32> {
    let mut buf = vec![0xaau8; size.max(1) + 16];
    let mut q = uapi::drm_onpu_query {
        query,
        size: size as u32,
        data: if size == 0 {
            0
        } else {
            buf.as_mut_ptr() as u64
        },
        ..Default::default()
    };
    accel::ioctl(file, &mut q)?;
    Ok((q.size, buf))
}

/// The QUERY structs' expected contents, from the specifications.
fn caps_match_spec(c: &uapi::drm_onpu_query_caps) -> Result<(), String> {
    let mut bad = Vec::new();
    let mut want = |name: &str, got: u64, want: u64| {
        if got != want {
            bad.push(format!("{name} = {got:#x}, want {want:#x}"));
        }
    };
    // npu-hw.rst: PCI 1234:4e50, VERSION major 1, VA_BITS 39, CLOCK_KHZ
    // 1,000,000, the default 1 MiB SRAM; onpu.rst: VA 1 MiB .. 256 GiB,
    // 256 objects, 16 MiB of commands, 5000 ms.
    want("device_id", c.device_id.into(), 0x4e50);
    want("isa major", (c.isa_version >> 16).into(), 1);
    want("va_bits", c.va_bits.into(), 39);
    want("clock_khz", c.clock_khz.into(), 1_000_000);
    want("sram_size", c.sram_size.into(), 1 << 20);
    want("va_start", c.va_start, 1 << 20);
    want("va_end", c.va_end, 256 << 30);
    want("max_job_bos", c.max_job_bos.into(), 256);
    want("max_cmdbuf_size", c.max_cmdbuf_size.into(), 16 << 20);
    want("job_timeout_ms", c.job_timeout_ms.into(), 5000);
    // Capabilities: F32, INT8, POOL; FAULT_INJECTION (this run injects).
    let need = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 31);
    want(
        "caps & (F32|INT8|POOL|FAULT_INJECTION)",
        (c.caps & need).into(),
        need.into(),
    );
    if c.num_contexts < 2 {
        bad.push(format!(
            "num_contexts = {}, want at least 2",
            c.num_contexts
        ));
    }
    if !(1..=4).contains(&c.num_rings) {
        bad.push(format!(
            "num_rings = {}, want 1 (device 1.0) to 4 (1.1)",
            c.num_rings
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn query_tests(tap: &mut Tap, c: &Ctx) {
    let f = &c.file;
    let caps_size = std::mem::size_of::<uapi::drm_onpu_query_caps>();
    let cost_size = std::mem::size_of::<uapi::drm_onpu_query_cost_model>();
    tap.check(
        "QUERY size 0 returns only the size (CAPS 64, COST_MODEL 32 bytes)",
        (|| {
            let (a, _) = query_into(f, uapi::DRM_ONPU_QUERY_CAPS, 0).map_err(errno_name)?;
            let (b, _) = query_into(f, uapi::DRM_ONPU_QUERY_COST_MODEL, 0).map_err(errno_name)?;
            expect(
                a == 64 && b == 32 && caps_size == 64 && cost_size == 32,
                || format!("sizes {a}, {b}"),
            )
        })(),
    );
    let caps = accel::query::<uapi::drm_onpu_query_caps>(f);
    tap.check(
        "QUERY CAPS: the spec's register values and the driver's limits",
        caps.map_err(errno_name).and_then(|c| {
            println!("# caps {c:x?}");
            caps_match_spec(&c)
        }),
    );
    tap.check(
        "QUERY CAPS agrees with GET_PARAM",
        (|| {
            let c = caps.map_err(errno_name)?;
            let p = |n| accel::get_param(f, n).map_err(errno_name);
            let pairs = [
                (u64::from(c.device_id), p(uapi::DRM_ONPU_PARAM_DEVICE_ID)?),
                (u64::from(c.revision), p(uapi::DRM_ONPU_PARAM_REVISION)?),
                (
                    u64::from(c.isa_version),
                    p(uapi::DRM_ONPU_PARAM_ISA_VERSION)?,
                ),
                (u64::from(c.sram_size), p(uapi::DRM_ONPU_PARAM_SRAM_SIZE)?),
                (
                    u64::from(c.num_contexts),
                    p(uapi::DRM_ONPU_PARAM_NUM_CONTEXTS)?,
                ),
                (u64::from(c.va_bits), p(uapi::DRM_ONPU_PARAM_VA_BITS)?),
                (u64::from(c.caps), p(uapi::DRM_ONPU_PARAM_CAPS)?),
                (u64::from(c.clock_khz), p(uapi::DRM_ONPU_PARAM_CLOCK_KHZ)?),
                (c.va_start, p(uapi::DRM_ONPU_PARAM_VA_START)?),
                (c.va_end, p(uapi::DRM_ONPU_PARAM_VA_END)?),
                (
                    u64::from(c.job_timeout_ms),
                    p(uapi::DRM_ONPU_PARAM_JOB_TIMEOUT_MS)?,
                ),
            ];
            expect(pairs.iter().all(|(a, b)| a == b), || format!("{pairs:?}"))
        })(),
    );
    tap.check(
        "QUERY COST_MODEL: the spec's COST_* values (64 64 256 1024 32 8 2 3)",
        accel::query::<uapi::drm_onpu_query_cost_model>(f)
            .map_err(errno_name)
            .and_then(|m| {
                let got = [
                    m.dma_bytes_per_cycle,
                    m.dma_latency,
                    m.f32_macs_per_cycle,
                    m.i8_macs_per_cycle,
                    m.vector_elems_per_cycle,
                    m.special_elems_per_cycle,
                    m.insn_overhead,
                    m.walk_cycles,
                ];
                expect(got == [64, 64, 256, 1024, 32, 8, 2, 3], || {
                    format!("{got:?}")
                })
            }),
    );
    tap.check(
        "QUERY with a smaller size writes only that prefix and returns the full size",
        (|| {
            let (size, buf) = query_into(f, uapi::DRM_ONPU_QUERY_CAPS, 6).map_err(errno_name)?;
            // device_id 0x4e50 (little endian), then the revision's low half.
            let rev = caps.map_err(errno_name)?.revision as u16;
            let mut want = vec![0x50u8, 0x4e, 0, 0];
            want.extend_from_slice(&rev.to_le_bytes());
            expect(
                size == 64 && buf[..6] == want[..] && buf[6..].iter().all(|&b| b == 0xaa),
                || format!("size {size}, bytes {:x?}", &buf[..10]),
            )
        })(),
    );
    tap.check(
        "QUERY with a larger size writes the struct only",
        (|| {
            let (size, buf) =
                query_into(f, uapi::DRM_ONPU_QUERY_COST_MODEL, 48).map_err(errno_name)?;
            expect(
                size == 32
                    && buf[..4] == 64u32.to_le_bytes()
                    && buf[32..].iter().all(|&b| b == 0xaa),
                || format!("size {size}, bytes {:x?}", &buf[..40]),
            )
        })(),
    );
    let raw = |query, flags, pad, size, data| {
        let mut q = uapi::drm_onpu_query {
            query,
            flags,
            size,
            pad,
            data,
        };
        accel::ioctl(f, &mut q)
    };
    let mut buf = [0u8; 64];
    let p = buf.as_mut_ptr() as u64;
    tap.check(
        "QUERY rejects an unknown query, flags and padding with EINVAL, a bad pointer with EFAULT",
        (|| {
            expect_errno(raw(2, 0, 0, 64, p), libc::EINVAL).map_err(|e| format!("query 2: {e}"))?;
            expect_errno(raw(u32::MAX, 0, 0, 0, 0), libc::EINVAL)
                .map_err(|e| format!("query ~0: {e}"))?;
            expect_errno(raw(0, 1, 0, 64, p), libc::EINVAL).map_err(|e| format!("flags: {e}"))?;
            expect_errno(raw(0, 0, 1, 64, p), libc::EINVAL).map_err(|e| format!("pad: {e}"))?;
            expect_errno(raw(0, 0, 0, 64, 0xffff_8880_0000_0000), libc::EFAULT)
                .map_err(|e| format!("pointer: {e}"))
        })(),
    );
}

fn get_param_tests(tap: &mut Tap, c: &Ctx) {
    let f = &c.file;
    tap.check(
        "GET_PARAM 10 is JOB_TIMEOUT_MS (5000), 11 NUM_PRIORITIES (4)",
        (|| {
            let t = accel::get_param(f, 10).map_err(errno_name)?;
            let n = accel::get_param(f, 11).map_err(errno_name)?;
            expect(
                (
                    uapi::DRM_ONPU_PARAM_JOB_TIMEOUT_MS,
                    uapi::DRM_ONPU_PARAM_NUM_PRIORITIES,
                    t,
                    n,
                ) == (10, 11, 5000, 4),
                || format!("JOB_TIMEOUT_MS {t}, NUM_PRIORITIES {n}"),
            )
        })(),
    );
    tap.check(
        "GET_PARAM of the removed counters and HW_CONTEXT (12..=15) and COUNT give EINVAL",
        (12..=16).try_for_each(|n| {
            expect_errno(accel::get_param(f, n), libc::EINVAL)
                .map_err(|e| format!("param {n}: {e}"))
        }),
    );
}

fn debugfs_tests(tap: &mut Tap, c: &Ctx) -> Option<PathBuf> {
    let dir = match kmod::wait_for_device().and_then(|p| debugfs::dir_of(&p)) {
        Ok(d) => d,
        Err(e) => {
            tap.check("debugfs directory of the accel device", Err(e));
            return None;
        }
    };
    let pci = kmod::pci_name().unwrap_or_default();
    tap.check(
        "debugfs files in /sys/kernel/debug/accel/<pci>/, no module-wide onpu directory",
        expect(
            dir.ends_with(&pci)
                && ["counters", "state", "wedged", "reset"]
                    .iter()
                    .all(|n| dir.join(n).exists())
                && !std::path::Path::new("/sys/kernel/debug/onpu").exists(),
            || format!("{} (pci {pci})", dir.display()),
        ),
    );
    tap.check(
        "debugfs wedged reads 0 on a working device",
        std::fs::read_to_string(dir.join("wedged"))
            .map_err(|e| e.to_string())
            .and_then(|s| expect(s == "0\n", || format!("{s:?}"))),
    );
    let counters = |d: &std::path::Path| -> Result<[u64; 3], String> {
        Ok([
            debugfs::counter_in(d, "jobs_submitted")?,
            debugfs::counter_in(d, "jobs_completed")?,
            debugfs::counter_in(d, "jobs_failed")?,
        ])
    };
    tap.check(
        "debugfs counters: a good job and a faulting one move submitted/completed/failed by 2/2/1",
        (|| {
            let before = counters(&dir)?;
            let w = c.run(&[Insn::End], &[])?;
            expect(w.status == uapi::DRM_ONPU_JOB_OK, || {
                format!("END job status {:#x}", w.status)
            })?;
            let dst = accel::bo_create(&c.file, 4096).map_err(errno_name)?;
            let dst_va = accel::bo_npu_addr(&c.file, dst.handle).map_err(errno_name)?;
            // Below the first address the kernel hands out: MMU_UNMAPPED.
            let w = c.run(
                &copyjob::insns(0x4000, dst_va, 256),
                &[(dst.handle, uapi::DRM_ONPU_BO_WRITE)],
            )?;
            expect(w.status == Fault::MmuUnmapped as u32, || {
                format!("fault job status {:#x}", w.status)
            })?;
            let after = counters(&dir)?;
            let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
            expect(delta == [2, 2, 1], || format!("{before:?} -> {after:?}"))
        })(),
    );
    Some(dir)
}

/// A NETLINK_KOBJECT_UEVENT socket bound to the kernel's broadcast group.
fn uevent_socket() -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    if fd < 0 {
        return Err(format!(
            "netlink socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl is valid; the fields are set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = 1;
    // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r < 0 {
        return Err(format!("netlink bind: {}", std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// Read uevents until one has every `want` key=value, or `limit` passes
/// (the limit bounds a failing test; the event is what is waited for).
fn wait_uevent(fd: &OwnedFd, want: &[&str], limit: Duration) -> Result<Vec<String>, String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no uevent with {want:?} (saw: {seen:?})"));
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r <= 0 {
            continue;
        }
        let mut buf = vec![0u8; 8192];
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let fields: Vec<String> = buf[..n as usize]
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if want.iter().all(|w| fields.iter().any(|f| f == w)) {
            return Ok(fields);
        }
        if let Some(first) = fields.first() {
            seen.push(first.clone());
        }
    }
}

fn wedged_tests(tap: &mut Tap, c: Ctx, dir: Option<PathBuf>) {
    let f = &c.file;
    let injecting = accel::fault_injection(f);
    if injecting != Ok(true) {
        tap.check(
            "the device injects faults (runs.list: --inject hang-slow-reset=3000:tag=48879)",
            Err(format!("{injecting:?}")),
        );
        return;
    }
    let uevents = match uevent_socket() {
        Ok(s) => s,
        Err(e) => {
            tap.check("uevent socket", Err(e));
            return;
        }
    };
    let resets_before = dir.as_deref().map(|d| debugfs::counter_in(d, "resets"));
    let syncobj = accel::syncobj_create(f, false).unwrap_or(0);
    // The job hangs; at its timeout the driver resets the device, which
    // does not come back in time: the device is wedged.
    let hung = c.submit(
        &[Insn::Mark { tag: WEDGE_TAG }, Insn::End],
        &[],
        200,
        syncobj,
    );
    let behind = c.submit(&[Insn::End], &[], 0, 0);
    tap.check(
        "a job whose reset fails ends TIMEDOUT, the job queued behind it CANCELED",
        (|| {
            let hung = hung.map_err(|e| format!("submit: {}", errno_name(e)))?;
            let behind = behind.map_err(|e| format!("submit: {}", errno_name(e)))?;
            let w1 =
                accel::wait(f, hung, 20 * SEC).map_err(|e| format!("wait: {}", errno_name(e)))?;
            let w2 =
                accel::wait(f, behind, 20 * SEC).map_err(|e| format!("wait: {}", errno_name(e)))?;
            expect(
                (w1.status, w1.error, w2.status, w2.error)
                    == (
                        uapi::DRM_ONPU_JOB_TIMEDOUT,
                        -libc::ETIMEDOUT,
                        uapi::DRM_ONPU_JOB_CANCELED,
                        -libc::ECANCELED,
                    ),
                || {
                    format!(
                        "hung job {:#x}/{}, queued job {:#x}/{}",
                        w1.status, w1.error, w2.status, w2.error
                    )
                },
            )
        })(),
    );
    tap.check(
        "the hung job's fence signalled with its error (-ETIMEDOUT)",
        (|| {
            let sf = accel::syncobj_export_sync_file(f, syncobj).map_err(errno_name)?;
            let status = npu_tools::syncfile::status(&sf)?;
            expect(status == -libc::ETIMEDOUT, || {
                format!("sync_file status {status}")
            })
        })(),
    );
    tap.check(
        "SUBMIT on the wedged device gives EIO",
        expect_errno(c.submit(&[Insn::End], &[], 0, 0), libc::EIO),
    );
    tap.check(
        "the wedged uevent (ACTION=change, WEDGED=rebind) comes from the accel device",
        wait_uevent(
            &uevents,
            &["ACTION=change", "WEDGED=rebind", "SUBSYSTEM=accel"],
            Duration::from_secs(20),
        )
        .map(|fields| println!("# uevent {fields:?}")),
    );
    match dir {
        Some(d) => {
            tap.check(
                "debugfs wedged reads 1",
                std::fs::read_to_string(d.join("wedged"))
                    .map_err(|e| e.to_string())
                    .and_then(|s| expect(s == "1\n", || format!("{s:?}"))),
            );
            tap.check(
                "debugfs resets counted the failed reset",
                match (resets_before, debugfs::counter_in(&d, "resets")) {
                    (Some(Ok(a)), Ok(b)) => expect(b == a + 1, || format!("resets {a} -> {b}")),
                    (a, b) => Err(format!("{a:?} {b:?}")),
                },
            );
        }
        None => tap.check("debugfs wedged reads 1", Err("no debugfs directory".into())),
    }
    drop(c);
    tap.check(
        "unbind and bind recover the device: a job runs, wedged reads 0",
        (|| {
            let pci = kmod::pci_name()?;
            std::fs::write("/sys/bus/pci/drivers/onpu/unbind", &pci)
                .map_err(|e| format!("unbind: {e}"))?;
            std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci)
                .map_err(|e| format!("bind: {e}"))?;
            let c = Ctx::open()?;
            let w = c.run(&[Insn::End], &[])?;
            expect(w.status == uapi::DRM_ONPU_JOB_OK, || {
                format!("status {:#x}", w.status)
            })?;
            let d = debugfs::dir_of(&kmod::wait_for_device()?)?;
            let s = std::fs::read_to_string(d.join("wedged")).map_err(|e| e.to_string())?;
            expect(s == "0\n", || format!("wedged {s:?}"))
        })(),
    );
}

fn main() {
    let mut tap = Tap::new(19);
    let c = match Ctx::open() {
        Ok(c) => c,
        Err(e) => {
            tap.check("open the device", Err(e));
            std::process::exit(tap.finish());
        }
    };
    query_tests(&mut tap, &c);
    get_param_tests(&mut tap, &c);
    let dir = debugfs_tests(&mut tap, &c);
    wedged_tests(&mut tap, c, dir);
    std::process::exit(tap.finish());
}
