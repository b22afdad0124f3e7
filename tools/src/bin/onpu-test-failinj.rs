//! kselftest: the driver under memory-allocation failure injection
//! (failslab and fail_page_alloc; issue 13). TAP output; run in the guest on
//! the debug kernel (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC,
//! CONFIG_FAULT_INJECTION_DEBUG_FS) with the driver loaded.
//!
//! For every call on the driver's allocation paths (open, BO_CREATE, BO_INFO,
//! mmap, BO_CREATE_USERPTR, CONTEXT_CREATE/DESTROY, QUEUE_CREATE/DESTROY,
//! SUBMIT with input and output syncobjs, timelines and implicit
//! dependencies, WAIT, WAIT_BO, GEM_CLOSE, close) it fails the 1st, 2nd, 3rd
//! ... allocation the call makes, one per call, until the call makes fewer
//! allocations than that (the kernel's systematic mode,
//! /proc/thread-self/fail-nth, Documentation/fault-injection/
//! fault-injection.rst): every allocation on the path fails once. The
//! injection is aimed at this task alone (task-filter=Y, probability 0: only
//! the fail-nth count of this thread fails anything) and is armed only
//! across the one call. Each call must succeed, or fail with ENOMEM, and
//! leave nothing half done: a failed call's objects are gone, a successful
//! one's work.
//!
//! Then, with injection off: every fence SUBMIT published (its output
//! syncobjs, kept as sync_files) signals within 10 s, with success for a job
//! SUBMIT queued and with an error for one it refused; a copy job runs and
//! its output is checked byte for byte; and the driver's live buffer
//! objects, the pinned pages of the process and the driver's queues per
//! priority are back where they were. The harness scans kmemleak and checks
//! the log for KASAN, lockdep and DMA-API reports after the run.
//!
//!   onpu-test-failinj

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::assemble;
use npu_tools::copyjob::{self, CopyJob};
use npu_tools::debugfs;
use npu_tools::faultinject::{FaultKnobs, CAPABILITIES};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The fault-injection capabilities aimed at the test's thread.
/// Most allocations one call may make before its sweep gives up.
const MAX_POINTS: u32 = 5000;
/// How long a fence, a job or a counter may take to get where it must.
const BOUND: Duration = Duration::from_secs(10);
const BOUND_NS: i64 = 10_000_000_000;
/// Every object's size: one page.
const SIZE: u64 = 4096;
/// Bytes the copy jobs move.
const LEN: u32 = 4096;
/// The output timeline point of the SUBMIT sweep's jobs.
const OUT_POINT: u64 = 5;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

fn io_errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The fault-injection knobs, set for the test and put back as they were
/// when dropped; the thread's fail-nth file.
struct Injector {
    fail_nth: File,
    make_it_fail: File,
    /// Put back after the files above are disarmed (field order).
    _knobs: FaultKnobs,
}

impl Injector {
    fn new() -> Result<Injector, String> {
        let fail_nth = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .map_err(|e| format!("/proc/thread-self/fail-nth: {e} (CONFIG_FAULT_INJECTION?)"))?;
        let make_it_fail = OpenOptions::new()
            .write(true)
            .open("/proc/thread-self/make-it-fail")
            .map_err(|e| format!("/proc/thread-self/make-it-fail: {e}"))?;
        Ok(Injector {
            fail_nth,
            make_it_fail,
            _knobs: FaultKnobs::new()?,
        })
    }

    /// From now on every `interval`th allocation of this thread fails
    /// while it is armed ([`Injector::armed`]); 0 turns that off.
    fn every(&self, interval: u32) -> Result<(), String> {
        let probability = if interval == 0 { "0" } else { "100" };
        for cap in CAPABILITIES {
            let dir = Path::new("/sys/kernel/debug").join(cap);
            for (knob, value) in [
                ("interval", interval.max(1).to_string()),
                ("probability", probability.to_string()),
            ] {
                let path = dir.join(knob);
                std::fs::write(&path, &value)
                    .map_err(|e| format!("{} = {value}: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Run `op` with this thread's make-it-fail set (the probability and
    /// interval knobs then decide).
    fn armed<T>(&self, op: impl FnOnce() -> T) -> Result<T, String> {
        self.make_it_fail
            .write_at(b"1", 0)
            .map_err(|e| format!("make-it-fail = 1: {e}"))?;
        let r = op();
        self.make_it_fail
            .write_at(b"0", 0)
            .map_err(|e| format!("make-it-fail = 0: {e}"))?;
        Ok(r)
    }

    /// Run `op` with the `n`th allocation this thread makes failing; its
    /// result, and whether that allocation happened (false: `op` made
    /// fewer than `n`).
    fn nth<T>(&self, n: u32, op: impl FnOnce() -> T) -> Result<(T, bool), String> {
        self.fail_nth
            .write_at(n.to_string().as_bytes(), 0)
            .map_err(|e| format!("fail-nth = {n}: {e}"))?;
        let r = op();
        let mut buf = [0u8; 16];
        let read = self.fail_nth.read_at(&mut buf, 0);
        // Disarmed before anything else happens.
        let disarm = self.fail_nth.write_at(b"0", 0);
        let len = read.map_err(|e| format!("reading fail-nth: {e}"))?;
        disarm.map_err(|e| format!("fail-nth = 0: {e}"))?;
        let left: u32 = std::str::from_utf8(&buf[..len])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("fail-nth reads {:?}", &buf[..len]))?;
        Ok((r, left == 0))
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.fail_nth.write_at(b"0", 0);
        let _ = self.make_it_fail.write_at(b"0", 0);
    }
}

/// What a sweep over one call found.
struct Swept {
    /// Allocations the call made (each failed once).
    points: u32,
    /// Calls that failed (with ENOMEM) when one failed.
    refused: u32,
}

/// Fail the 1st, 2nd, ... allocation of `op` (on a fresh `setup()` each
/// time) until it makes fewer: each result must be success or ENOMEM, and
/// `after` (injection off) checks the state the call left; the last call,
/// in which nothing failed, must succeed.
fn sweep<S, T>(
    inj: &Injector,
    mut setup: impl FnMut() -> Result<S, String>,
    mut op: impl FnMut(&mut S) -> Result<T, i32>,
    mut after: impl FnMut(S, Result<T, i32>) -> Result<(), String>,
) -> Result<Swept, String> {
    let mut refused = 0;
    for n in 1..=MAX_POINTS {
        let mut state = setup().map_err(|e| format!("setup for allocation {n}: {e}"))?;
        let (r, injected) = inj.nth(n, || op(&mut state))?;
        match (&r, injected) {
            (Ok(_), _) => {}
            (Err(e), true) if *e == libc::ENOMEM => refused += 1,
            (Err(e), true) => {
                return Err(format!(
                    "allocation {n} failed: the call gave {}, want success or ENOMEM",
                    errno_name(*e)
                ))
            }
            (Err(e), false) => {
                return Err(format!(
                    "with no allocation failing (after {} points) the call gave {}",
                    n - 1,
                    errno_name(*e)
                ))
            }
        }
        after(state, r).map_err(|e| format!("allocation {n} failed: {e}"))?;
        if !injected {
            return Ok(Swept {
                points: n - 1,
                refused,
            });
        }
    }
    Err(format!(
        "more than {MAX_POINTS} allocations in one call: the sweep gave up"
    ))
}

/// How a published fence must end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Its job was queued and ran: success.
    Success,
    /// SUBMIT refused its job after publishing it: an error.
    Error,
    /// A timeline point (a chain node carries no error): signalled.
    Signalled,
}

/// The fences SUBMIT published, as sync_files, checked at the end.
#[derive(Default)]
struct Fences {
    list: Vec<(String, OwnedFd, Expect)>,
}

impl Fences {
    /// Keep the fence of syncobj `handle`, if it holds one.
    fn keep(
        &mut self,
        file: &File,
        handle: u32,
        what: String,
        expect: Expect,
    ) -> Result<(), String> {
        match accel::syncobj_export_sync_file(file, handle) {
            Ok(fd) => {
                self.list.push((what, fd, expect));
                Ok(())
            }
            // No fence was attached (the SUBMIT failed before publishing).
            Err(libc::EINVAL) if expect != Expect::Success => Ok(()),
            Err(e) => Err(format!("{what}: exporting its fence: {}", errno_name(e))),
        }
    }
}

/// Wait up to the bound for a sync_file to signal; its status (1, or the
/// error it signalled with).
fn fence_status(fd: &OwnedFd, deadline: Instant) -> Result<i32, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r > 0 {
            break;
        }
        if r < 0 && io_errno(std::io::Error::last_os_error()) == libc::EINTR {
            continue;
        }
        if r < 0 {
            return Err(format!("poll: {}", std::io::Error::last_os_error()));
        }
        return Err(format!("not signalled within {} s", BOUND.as_secs()));
    }
    npu_tools::syncfile::status(fd)
}

fn device() -> Result<PathBuf, String> {
    accel::find_device().map_err(|e| e.to_string())
}

fn open(path: &Path) -> Result<File, String> {
    accel::open(path).map_err(|e| format!("open {}: {e}", path.display()))
}

fn bo(file: &File, size: u64) -> Result<Bo, String> {
    accel::bo_create(file, size).map_err(|e| format!("bo_create: {}", errno_name(e)))
}

fn npu_addr(file: &File, bo: &Bo) -> Result<u64, String> {
    accel::bo_npu_addr(file, bo.handle).map_err(|e| format!("bo_info: {}", errno_name(e)))
}

fn fill(file: &File, bo: &Bo, bytes: &[u8]) -> Result<(), String> {
    Mapping::new(file, bo)
        .map_err(|e| format!("mmap: {e}"))?
        .as_mut_slice()[..bytes.len()]
        .copy_from_slice(bytes);
    Ok(())
}

fn contents(file: &File, bo: &Bo, len: usize) -> Result<Vec<u8>, String> {
    let mut m = Mapping::new(file, bo).map_err(|e| format!("mmap: {e}"))?;
    Ok(m.as_mut_slice()[..len].to_vec())
}

/// A command buffer object copying LEN bytes from `src` to `dst`; its size.
fn copy_program(file: &File, src: u64, dst: u64) -> Result<(Bo, u32), String> {
    let code = assemble(&copyjob::insns(src, dst, LEN));
    let cmd = bo(file, SIZE)?;
    fill(file, &cmd, &code)?;
    Ok((cmd, code.len() as u32))
}

fn queue_in(file: &File, context_id: u32, priority: u32) -> Result<u32, i32> {
    let mut q = uapi::drm_onpu_queue_create {
        context_id,
        priority,
        ..Default::default()
    };
    accel::ioctl(file, &mut q)?;
    Ok(q.queue_id)
}

fn bo_ref(bo: &Bo, flags: u32) -> uapi::drm_onpu_bo_ref {
    uapi::drm_onpu_bo_ref {
        handle: bo.handle,
        flags,
    }
}

fn sync_point(handle: u32, point: u64, flags: u32) -> uapi::drm_onpu_sync {
    uapi::drm_onpu_sync {
        handle,
        flags,
        point,
    }
}

/// SUBMIT of `cmd` to `queue`.
fn submit(
    file: &File,
    queue: u32,
    cmd: &(Bo, u32),
    bos: &[uapi::drm_onpu_bo_ref],
    ins: &[uapi::drm_onpu_sync],
    outs: &[uapi::drm_onpu_sync],
) -> Result<u64, i32> {
    let mut req = uapi::drm_onpu_submit {
        queue_id: queue,
        cmdbuf_handle: cmd.0.handle,
        cmdbuf_size: cmd.1,
        bos: accel::obj_array(bos),
        in_syncs: accel::obj_array(ins),
        out_syncs: accel::obj_array(outs),
        ..Default::default()
    };
    accel::submit(file, &mut req)
}

/// WAIT for a job, which must have succeeded.
fn wait_ok(file: &File, seqno: u64, what: &str) -> Result<(), String> {
    let w = accel::wait(file, seqno, BOUND_NS)
        .map_err(|e| format!("{what}: wait: {}", errno_name(e)))?;
    copyjob::ok_outcome(&w).map_err(|e| format!("{what}: {e}"))
}

/// A page of anonymous memory, unmapped when dropped.
struct UserPage(*mut libc::c_void);

impl UserPage {
    fn new(fill: u8) -> Result<UserPage, String> {
        // SAFETY: a fresh private anonymous mapping; nothing else is
        // touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        // Present before the call under test: a page fault there would be
        // one more allocation of the sweep, not the driver's.
        // SAFETY: the SIZE bytes just mapped read-write.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), fill, SIZE as usize) };
        Ok(UserPage(p))
    }

    fn addr(&self) -> u64 {
        self.0 as u64
    }
}

impl Drop for UserPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), not used after this.
        unsafe { libc::munmap(self.0, SIZE as usize) };
    }
}

/// The BO_CREATE_USERPTR of a page.
fn userptr(file: &File, page: &UserPage) -> Result<Bo, i32> {
    accel::bo_create_userptr(file, page.addr(), SIZE, 0)
}

// ---------------------------------------------------------------------
// The sweeps, one per call.

fn sweep_open(inj: &Injector) -> Result<Swept, String> {
    let path = device()?;
    sweep(
        inj,
        || Ok(()),
        |_| accel::open(&path).map_err(io_errno),
        |_, r| match r {
            // The file works: a queue and an object.
            Ok(f) => {
                accel::queue_create(&f, uapi::DRM_ONPU_PRIORITY_NORMAL)
                    .map_err(|e| format!("queue_create on the file: {}", errno_name(e)))?;
                bo(&f, SIZE).map(drop)
            }
            Err(_) => Ok(()),
        },
    )
}

fn sweep_bo_create(inj: &Injector, file: &File) -> Result<Swept, String> {
    sweep(
        inj,
        || Ok(()),
        |_| {
            let mut c = uapi::drm_onpu_bo_create {
                size: SIZE,
                ..Default::default()
            };
            accel::ioctl(file, &mut c).map(|_| c)
        },
        |_, r| match r {
            Ok(c) => {
                let info = accel::bo_info_raw(file, c.handle)
                    .map_err(|e| format!("bo_info of the new object: {}", errno_name(e)))?;
                if info.size != SIZE || info.npu_addr != c.npu_addr {
                    return Err(format!(
                        "bo_info: size {} address {:#x}, want {SIZE} and {:#x}",
                        info.size, info.npu_addr, c.npu_addr
                    ));
                }
                accel::gem_close(file, c.handle)
                    .map_err(|e| format!("gem_close: {}", errno_name(e)))
            }
            Err(_) => Ok(()),
        },
    )
}

fn sweep_bo_info(inj: &Injector, file: &File) -> Result<Swept, String> {
    sweep(
        inj,
        || bo(file, SIZE),
        |b| accel::bo_info_raw(file, b.handle),
        |b, r| {
            if let Ok(i) = r {
                if i.size != SIZE || i.mmap_offset == 0 {
                    return Err(format!(
                        "bo_info: size {} mmap offset {:#x}",
                        i.size, i.mmap_offset
                    ));
                }
            }
            accel::gem_close(file, b.handle).map_err(|e| format!("gem_close: {}", errno_name(e)))
        },
    )
}

/// mmap() of an object never mapped: its pages are allocated then.
fn sweep_mmap(inj: &Injector, file: &File) -> Result<Swept, String> {
    sweep(
        inj,
        || bo(file, SIZE),
        |b| Mapping::new(file, b).map_err(io_errno),
        |b, r| {
            if let Ok(mut m) = r {
                let s = m.as_mut_slice();
                if s.iter().any(|&x| x != 0) {
                    return Err("a new object's mapping is not all zero".into());
                }
                s[..4].copy_from_slice(b"fail");
                drop(m);
                if contents(file, &b, 4)? != b"fail" {
                    return Err("what was written through the mapping is gone".into());
                }
            }
            accel::gem_close(file, b.handle).map_err(|e| format!("gem_close: {}", errno_name(e)))
        },
    )
}

fn sweep_userptr(inj: &Injector, file: &File) -> Result<Swept, String> {
    sweep(
        inj,
        || UserPage::new(0x5a),
        |page| {
            // The one ioctl (accel::bo_create_userptr adds a BO_INFO).
            let mut c = uapi::drm_onpu_bo_create_userptr {
                user_ptr: page.addr(),
                size: SIZE,
                ..Default::default()
            };
            accel::ioctl(file, &mut c).map(|_| c)
        },
        |page, r| {
            if let Ok(c) = r {
                let b = accel::bo_info(file, c.handle)
                    .map_err(|e| format!("bo_info of the new object: {}", errno_name(e)))?;
                if b.size != SIZE || b.flags.bits() & uapi::DRM_ONPU_BO_NO_MMAP == 0 {
                    return Err(format!(
                        "userptr object: size {} flags {:#x}",
                        b.size,
                        b.flags.bits()
                    ));
                }
                accel::gem_close(file, b.handle)
                    .map_err(|e| format!("gem_close: {}", errno_name(e)))?;
            }
            drop(page);
            Ok(())
        },
    )
}

fn sweep_context_create(inj: &Injector, file: &File) -> Result<Swept, String> {
    sweep(
        inj,
        || Ok(()),
        |_| accel::context_create(file),
        |_, r| match r {
            Ok(id) => {
                // It works: a queue in it.
                let q = queue_in(file, id, uapi::DRM_ONPU_PRIORITY_NORMAL)
                    .map_err(|e| format!("queue in the new context: {}", errno_name(e)))?;
                accel::queue_destroy(file, q)
                    .map_err(|e| format!("queue_destroy: {}", errno_name(e)))?;
                accel::context_destroy(file, id)
                    .map_err(|e| format!("context_destroy: {}", errno_name(e)))
            }
            Err(_) => Ok(()),
        },
    )
}

fn sweep_context_destroy(inj: &Injector, file: &File) -> Result<Swept, String> {
    sweep(
        inj,
        || accel::context_create(file).map_err(|e| format!("context_create: {}", errno_name(e))),
        |id| accel::context_destroy(file, *id),
        |id, r| match r {
            Ok(()) => match accel::context_destroy(file, id) {
                Err(libc::ENOENT) => Ok(()),
                other => Err(format!("destroying it again: {other:?}, want ENOENT")),
            },
            Err(_) => accel::context_destroy(file, id)
                .map_err(|e| format!("context_destroy after the failed one: {}", errno_name(e))),
        },
    )
}

/// QUEUE_CREATE of each priority the test may use, in the default context
/// and in a created one.
fn sweep_queue_create(
    inj: &Injector,
    file: &File,
    context_id: u32,
    priority: u32,
) -> Result<Swept, String> {
    let dir = debugfs::dir()?;
    let before = queues_per_priority(&dir)?;
    sweep(
        inj,
        || Ok(()),
        |_| queue_in(file, context_id, priority),
        |_, r| {
            if let Ok(q) = r {
                accel::queue_destroy(file, q)
                    .map_err(|e| format!("queue_destroy: {}", errno_name(e)))?;
            }
            // Created and destroyed, or never made: counted as before.
            let now = queues_per_priority(&dir)?;
            if now != before {
                return Err(format!(
                    "the driver counts queues per priority {now}, want {before} as before"
                ));
            }
            Ok(())
        },
    )
}

fn sweep_queue_destroy(inj: &Injector, file: &File) -> Result<Swept, String> {
    sweep(
        inj,
        || {
            accel::queue_create(file, uapi::DRM_ONPU_PRIORITY_HIGH)
                .map_err(|e| format!("queue_create: {}", errno_name(e)))
        },
        |q| accel::queue_destroy(file, *q),
        |q, r| match r {
            Ok(()) => match accel::queue_destroy(file, q) {
                Err(libc::ENOENT) => Ok(()),
                other => Err(format!("destroying it again: {other:?}, want ENOENT")),
            },
            Err(_) => accel::queue_destroy(file, q)
                .map_err(|e| format!("queue_destroy after the failed one: {}", errno_name(e))),
        },
    )
}

/// One SUBMIT of the sweep and what it waits for: a fresh file whose
/// first job (the blocker, queue A, default context) copies junk into the
/// destination once the gate timeline reaches point 1; the job under test
/// (queue B, in the default context or a created one) copies the source
/// into the destination. It depends on the gate's point 1 (no fence yet:
/// WAIT_FOR_SUBMIT), on the blocker's output (a foreign unsignalled
/// fence), on a signalled syncobj, and implicitly on the blocker (it
/// writes what the blocker writes); it signals a binary syncobj and a
/// timeline point. Its objects are new to its context (pages, DMA and
/// page-table mappings are made by this SUBMIT), one of them user memory.
struct SubmitCase {
    file: File,
    queue: u32,
    cmd: (Bo, u32),
    refs: Vec<uapi::drm_onpu_bo_ref>,
    ins: Vec<uapi::drm_onpu_sync>,
    outs: Vec<uapi::drm_onpu_sync>,
    gate: u32,
    blocker: u64,
    dst: Bo,
    want: Vec<u8>,
    _user: UserPage,
}

impl SubmitCase {
    fn new(path: &Path, created_context: bool, seed: u32) -> Result<SubmitCase, String> {
        let file = open(path)?;
        let e = |what: &'static str| move |e: i32| format!("{what}: {}", errno_name(e));
        let blocker_queue = accel::queue_create(&file, uapi::DRM_ONPU_PRIORITY_NORMAL)
            .map_err(e("queue_create"))?;
        let context = if created_context {
            accel::context_create(&file).map_err(e("context_create"))?
        } else {
            0
        };
        let queue =
            queue_in(&file, context, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(e("queue_create"))?;
        let junk = bo(&file, SIZE)?;
        let src = bo(&file, SIZE)?;
        let dst = bo(&file, SIZE)?;
        let scratch = bo(&file, SIZE)?;
        let want = copyjob::pattern(seed, LEN as usize);
        fill(&file, &junk, &copyjob::pattern(seed ^ 0xffff, LEN as usize))?;
        fill(&file, &src, &want)?;
        let user = UserPage::new(0)?;
        let user_bo = userptr(&file, &user).map_err(e("bo_create_userptr"))?;
        let gate = accel::syncobj_create(&file, false).map_err(e("syncobj_create"))?;
        let blocker_out = accel::syncobj_create(&file, false).map_err(e("syncobj_create"))?;
        let signalled = accel::syncobj_create(&file, true).map_err(e("syncobj_create"))?;
        let out_bin = accel::syncobj_create(&file, false).map_err(e("syncobj_create"))?;
        let out_tl = accel::syncobj_create(&file, false).map_err(e("syncobj_create"))?;
        let blocker_cmd = copy_program(&file, npu_addr(&file, &junk)?, npu_addr(&file, &dst)?)?;
        let blocker = submit(
            &file,
            blocker_queue,
            &blocker_cmd,
            &[
                bo_ref(&junk, uapi::DRM_ONPU_BO_READ),
                bo_ref(&dst, uapi::DRM_ONPU_BO_WRITE),
            ],
            &[sync_point(gate, 1, uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT)],
            &[sync_point(blocker_out, 0, 0)],
        )
        .map_err(e("blocker submit"))?;
        let cmd = copy_program(&file, npu_addr(&file, &src)?, npu_addr(&file, &dst)?)?;
        Ok(SubmitCase {
            queue,
            cmd,
            refs: vec![
                bo_ref(&src, uapi::DRM_ONPU_BO_READ),
                bo_ref(&dst, uapi::DRM_ONPU_BO_WRITE),
                bo_ref(&scratch, uapi::DRM_ONPU_BO_READ | uapi::DRM_ONPU_BO_WRITE),
                bo_ref(&user_bo, uapi::DRM_ONPU_BO_READ | uapi::DRM_ONPU_BO_WRITE),
            ],
            ins: vec![
                sync_point(gate, 1, uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT),
                sync_point(blocker_out, 0, 0),
                sync_point(signalled, 0, 0),
            ],
            outs: vec![sync_point(out_bin, 0, 0), sync_point(out_tl, OUT_POINT, 0)],
            gate,
            blocker,
            dst,
            want,
            _user: user,
            file,
        })
    }

    fn submit(&self) -> Result<u64, i32> {
        submit(
            &self.file, self.queue, &self.cmd, &self.refs, &self.ins, &self.outs,
        )
    }

    /// Open the gate; the blocker and (if queued) the job run; check them
    /// and keep the fences the job published.
    fn finish(self, r: Result<u64, i32>, fences: &mut Fences, what: &str) -> Result<(), String> {
        let f = &self.file;
        accel::syncobj_timeline_signal(f, self.gate, 1)
            .map_err(|e| format!("signalling the gate: {}", errno_name(e)))?;
        wait_ok(f, self.blocker, "the blocker job")?;
        let (out_bin, out_tl) = (self.outs[0].handle, self.outs[1].handle);
        match r {
            Ok(seqno) => {
                wait_ok(f, seqno, "the job")?;
                let got = contents(f, &self.dst, LEN as usize)?;
                if let Some(i) = got.iter().zip(&self.want).position(|(a, b)| a != b) {
                    return Err(format!(
                        "the job's output differs at byte {i}: {:#x}, want {:#x}",
                        got[i], self.want[i]
                    ));
                }
                let last = accel::syncobj_query(f, out_tl)
                    .map_err(|e| format!("syncobj_query: {}", errno_name(e)))?;
                if last != OUT_POINT {
                    return Err(format!(
                        "the output timeline is at point {last}, want {OUT_POINT}"
                    ));
                }
                fences.keep(
                    f,
                    out_bin,
                    format!("{what}: binary output"),
                    Expect::Success,
                )?;
                fences.keep(
                    f,
                    out_tl,
                    format!("{what}: timeline output"),
                    Expect::Signalled,
                )?;
            }
            Err(_) => {
                // Published or not: a fence in an output must end, with an error.
                fences.keep(
                    f,
                    out_bin,
                    format!("{what}: binary output of a refused job"),
                    Expect::Error,
                )?;
                let last = accel::syncobj_query(f, out_tl)
                    .map_err(|e| format!("syncobj_query: {}", errno_name(e)))?;
                if last != 0 {
                    fences.keep(
                        f,
                        out_tl,
                        format!("{what}: timeline output of a refused job"),
                        Expect::Signalled,
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn sweep_submit(
    inj: &Injector,
    created_context: bool,
    fences: &mut Fences,
) -> Result<Swept, String> {
    let path = device()?;
    let what = if created_context {
        "SUBMIT (created context)"
    } else {
        "SUBMIT (default context)"
    };
    let n = std::cell::Cell::new(0);
    sweep(
        inj,
        || {
            n.set(n.get() + 1);
            SubmitCase::new(&path, created_context, n.get())
        },
        |c| c.submit(),
        |c, r| c.finish(r, fences, &format!("{what}, allocation {}", n.get())),
    )
}

/// WAIT and WAIT_BO on a job that ran (its release happens in WAIT).
fn sweep_wait(inj: &Injector, path: &Path, wait_bo: bool) -> Result<Swept, String> {
    sweep(
        inj,
        || {
            let f = accel::open_with_queue(path).map_err(|e| e.to_string())?;
            let job = CopyJob::new(&f, LEN).map_err(String::from)?;
            job.fill_src(&f, &copyjob::pattern(7, LEN as usize))
                .map_err(String::from)?;
            let seqno = job.submit(&f, 0).map_err(String::from)?;
            Ok((f, job, seqno))
        },
        |(f, job, seqno)| {
            if wait_bo {
                accel::wait_bo(&*f, job.dst.handle, BOUND_NS)
            } else {
                accel::wait(&*f, *seqno, BOUND_NS).map(drop)
            }
        },
        |(f, job, seqno), r| {
            if wait_bo || r.is_err() {
                CopyJob::wait_ok(&f, seqno).map_err(String::from)?;
            } else {
                // Reaped: a second WAIT does not know it.
                match accel::wait(&f, seqno, 0) {
                    Err(libc::ENOENT) => {}
                    other => return Err(format!("WAIT again: {other:?}, want ENOENT")),
                }
            }
            job.check_dst(&f, &copyjob::pattern(7, LEN as usize))
                .map_err(String::from)
        },
    )
}

/// GEM_CLOSE of the last handle of an object a finished job of a created
/// context used: it is unmapped from both contexts.
fn sweep_gem_close(inj: &Injector, path: &Path) -> Result<Swept, String> {
    sweep(
        inj,
        || {
            let f = open(path)?;
            let ctx = accel::context_create(&f)
                .map_err(|e| format!("context_create: {}", errno_name(e)))?;
            let q = queue_in(&f, ctx, uapi::DRM_ONPU_PRIORITY_NORMAL)
                .map_err(|e| format!("queue_create: {}", errno_name(e)))?;
            let (src, dst) = (bo(&f, SIZE)?, bo(&f, SIZE)?);
            let cmd = copy_program(&f, npu_addr(&f, &src)?, npu_addr(&f, &dst)?)?;
            let refs = [
                bo_ref(&src, uapi::DRM_ONPU_BO_READ),
                bo_ref(&dst, uapi::DRM_ONPU_BO_WRITE),
            ];
            let seqno = submit(&f, q, &cmd, &refs, &[], &[])
                .map_err(|e| format!("submit: {}", errno_name(e)))?;
            wait_ok(&f, seqno, "the job")?;
            Ok((f, dst))
        },
        |(f, dst)| accel::gem_close(&*f, dst.handle),
        |(f, dst), r| match (r, accel::bo_info_raw(&f, dst.handle)) {
            (Ok(()), Err(libc::ENOENT)) => Ok(()),
            (Ok(()), other) => Err(format!("bo_info after gem_close: {other:?}, want ENOENT")),
            (Err(_), _) => accel::gem_close(&f, dst.handle)
                .map_err(|e| format!("gem_close again: {}", errno_name(e))),
        },
    )
}

/// close() of a file with queues in two contexts, mapped objects, a job
/// that ran and one that waits for a point nobody will signal: that one
/// is cancelled, and its fence (kept as a sync_file) signals with an error.
fn sweep_close(inj: &Injector, path: &Path, fences: &mut Fences) -> Result<Swept, String> {
    let n = std::cell::Cell::new(0);
    sweep(
        inj,
        || {
            n.set(n.get() + 1);
            let e = |what: &'static str| move |e: i32| format!("{what}: {}", errno_name(e));
            let f = accel::open_with_queue(path).map_err(|e| e.to_string())?;
            let job = CopyJob::new(&f, LEN).map_err(String::from)?;
            job.run(&f, &copyjob::pattern(n.get(), LEN as usize))
                .map_err(String::from)?;
            let ctx = accel::context_create(&f).map_err(e("context_create"))?;
            let queue_id =
                queue_in(&f, ctx, uapi::DRM_ONPU_PRIORITY_HIGH).map_err(e("queue_create"))?;
            let never = accel::syncobj_create(&f, false).map_err(e("syncobj_create"))?;
            let out = accel::syncobj_create(&f, false).map_err(e("syncobj_create"))?;
            let ins = [sync_point(never, 1, uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT)];
            let outs = [sync_point(out, 0, 0)];
            let mut req = uapi::drm_onpu_submit {
                queue_id,
                in_syncs: accel::obj_array(&ins),
                out_syncs: accel::obj_array(&outs),
                ..Default::default()
            };
            job.submit_with(&f, &mut req).map_err(String::from)?;
            let fence = accel::syncobj_export_sync_file(&f, out)
                .map_err(e("exporting the waiting job's fence"))?;
            Ok((Some(f), fence))
        },
        |(f, _)| {
            let f = f.take().ok_or(libc::EBADF)?;
            // SAFETY: the descriptor is ours (into_raw_fd), closed once.
            match unsafe { libc::close(f.into_raw_fd()) } {
                0 => Ok(()),
                _ => Err(io_errno(std::io::Error::last_os_error())),
            }
        },
        |(_, fence), r| {
            r.map_err(|e| format!("close gave {}", errno_name(e)))?;
            let what = format!("close, allocation {}: the job the close cancelled", n.get());
            fences.list.push((what, fence, Expect::Error));
            Ok(())
        },
    )
}

// ---------------------------------------------------------------------
// Whole scenarios with every call armed and every Nth allocation failing.

/// Calls made and refused in the interval phase.
#[derive(Default)]
struct Tally {
    calls: u32,
    refused: u32,
}

/// `op` armed: its result, None for ENOMEM, an error for anything else.
fn armed<T>(
    inj: &Injector,
    tally: &mut Tally,
    what: &str,
    op: impl FnOnce() -> Result<T, i32>,
) -> Result<Option<T>, String> {
    tally.calls += 1;
    match inj.armed(op)? {
        Ok(v) => Ok(Some(v)),
        Err(libc::ENOMEM) => {
            tally.refused += 1;
            Ok(None)
        }
        Err(e) => Err(format!(
            "{what} gave {}, want success or ENOMEM",
            errno_name(e)
        )),
    }
}

fn bo_create_raw(file: &File) -> Result<uapi::drm_onpu_bo_create, i32> {
    let mut c = uapi::drm_onpu_bo_create {
        size: SIZE,
        ..Default::default()
    };
    accel::ioctl(file, &mut c).map(|_| c)
}

/// WAIT armed, then (refused) unarmed: the job must have succeeded.
fn wait_armed(
    inj: &Injector,
    t: &mut Tally,
    f: &File,
    seqno: u64,
    what: &str,
) -> Result<(), String> {
    let w = match armed(inj, t, what, || accel::wait(f, seqno, BOUND_NS))? {
        Some(w) => w,
        None => {
            accel::wait(f, seqno, BOUND_NS).map_err(|e| format!("{what}: {}", errno_name(e)))?
        }
    };
    copyjob::ok_outcome(&w).map_err(|e| format!("{what}: {e}"))
}

/// One file's life with every call armed: open, a queue in the default
/// context and one in a created context, objects (one of user memory)
/// written through mmap, a copy job and a second one that depends on it
/// explicitly (its output syncobj) and implicitly (it reads what the first
/// wrote), WAIT, GEM_CLOSE and close. A refused call ends the scenario
/// where nothing can go on without it; what ran is checked.
fn interval_round(
    inj: &Injector,
    path: &Path,
    seed: u32,
    t: &mut Tally,
    fences: &mut Fences,
) -> Result<(), String> {
    let Some(f) = armed(inj, t, "open", || accel::open(path).map_err(io_errno))? else {
        return Ok(());
    };
    let r = interval_file(inj, &f, seed, t, fences);
    // SAFETY: the descriptor is ours, closed once.
    let closed = armed(inj, t, "close", || {
        match unsafe { libc::close(f.into_raw_fd()) } {
            0 => Ok(()),
            _ => Err(io_errno(std::io::Error::last_os_error())),
        }
    });
    r?;
    match closed? {
        Some(()) => Ok(()),
        None => Err("close gave ENOMEM".into()),
    }
}

fn interval_file(
    inj: &Injector,
    f: &File,
    seed: u32,
    t: &mut Tally,
    fences: &mut Fences,
) -> Result<(), String> {
    let normal = uapi::DRM_ONPU_PRIORITY_NORMAL;
    let Some(q1) = armed(inj, t, "QUEUE_CREATE", || queue_in(f, 0, normal))? else {
        return Ok(());
    };
    let Some(ctx) = armed(inj, t, "CONTEXT_CREATE", || accel::context_create(f))? else {
        return Ok(());
    };
    let high = uapi::DRM_ONPU_PRIORITY_HIGH;
    let Some(q2) = armed(inj, t, "QUEUE_CREATE", || queue_in(f, ctx, high))? else {
        return Ok(());
    };
    let mut objs = Vec::new();
    for _ in 0..5 {
        let Some(c) = armed(inj, t, "BO_CREATE", || bo_create_raw(f))? else {
            return Ok(());
        };
        objs.push(c);
    }
    let (src, dst, dst2, cmd1, cmd2) = (objs[0], objs[1], objs[2], objs[3], objs[4]);
    let want = copyjob::pattern(seed, LEN as usize);
    let programs = [
        (src, want.clone()),
        (
            cmd1,
            assemble(&copyjob::insns(src.npu_addr, dst.npu_addr, LEN)),
        ),
        (
            cmd2,
            assemble(&copyjob::insns(dst.npu_addr, dst2.npu_addr, LEN)),
        ),
    ];
    for (o, bytes) in programs.iter() {
        let info =
            accel::bo_info(f, o.handle).map_err(|e| format!("bo_info: {}", errno_name(e)))?;
        let Some(mut m) = armed(inj, t, "mmap", || Mapping::new(f, &info).map_err(io_errno))?
        else {
            return Ok(());
        };
        m.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    }
    let page = UserPage::new(0)?;
    let Some(user) = armed(inj, t, "BO_CREATE_USERPTR", || userptr(f, &page))? else {
        return Ok(());
    };
    let e = |what: &'static str| move |e: i32| format!("{what}: {}", errno_name(e));
    let out1 = accel::syncobj_create(f, false).map_err(e("syncobj_create"))?;
    let out2 = accel::syncobj_create(f, false).map_err(e("syncobj_create"))?;
    let r = |o: &uapi::drm_onpu_bo_create, flags| uapi::drm_onpu_bo_ref {
        handle: o.handle,
        flags,
    };
    let (rd, wr) = (uapi::DRM_ONPU_BO_READ, uapi::DRM_ONPU_BO_WRITE);
    let job1 = armed(inj, t, "SUBMIT", || {
        submit(
            f,
            q1,
            &(bo_of(&cmd1), programs[1].1.len() as u32),
            &[r(&src, rd), r(&dst, wr), bo_ref(&user, rd | wr)],
            &[],
            &[sync_point(out1, 0, 0)],
        )
    })?;
    let expect1 = if job1.is_some() {
        Expect::Success
    } else {
        Expect::Error
    };
    fences.keep(
        f,
        out1,
        format!("interval round {seed}: first job"),
        expect1,
    )?;
    let Some(job1) = job1 else {
        return Ok(());
    };
    let job2 = armed(inj, t, "SUBMIT", || {
        submit(
            f,
            q2,
            &(bo_of(&cmd2), programs[2].1.len() as u32),
            &[r(&dst, rd), r(&dst2, wr)],
            &[sync_point(out1, 0, 0)],
            &[sync_point(out2, 0, 0)],
        )
    })?;
    let expect2 = if job2.is_some() {
        Expect::Success
    } else {
        Expect::Error
    };
    fences.keep(
        f,
        out2,
        format!("interval round {seed}: second job"),
        expect2,
    )?;
    wait_armed(inj, t, f, job1, "WAIT for the first job")?;
    if let Some(job2) = job2 {
        wait_armed(inj, t, f, job2, "WAIT for the second job")?;
        let dst2 = accel::bo_info(f, dst2.handle).map_err(e("bo_info"))?;
        let got = contents(f, &dst2, LEN as usize)?;
        if got != want {
            return Err("the second job's output is not the first job's input".into());
        }
    }
    if armed(inj, t, "GEM_CLOSE", || accel::gem_close(f, src.handle))?.is_none() {
        return Err("GEM_CLOSE gave ENOMEM".into());
    }
    Ok(())
}

/// A created object as a Bo, for the submit helper (no mmap offset).
fn bo_of(c: &uapi::drm_onpu_bo_create) -> Bo {
    Bo {
        handle: c.handle,
        size: SIZE,
        mmap_offset: 0,
        flags: uapi::BoFlags::empty(),
    }
}

/// Intervals of the interval phase, and rounds per interval.
const INTERVALS: [u32; 12] = [2, 3, 4, 5, 7, 11, 13, 17, 23, 31, 47, 97];
const ROUNDS: u32 = 3;

fn interval_phase(inj: &Injector, path: &Path, fences: &mut Fences) -> Result<Tally, String> {
    let mut t = Tally::default();
    let mut r = Ok(());
    'all: for interval in INTERVALS {
        inj.every(interval)?;
        for round in 0..ROUNDS {
            r = interval_round(inj, path, interval * 100 + round, &mut t, fences)
                .map_err(|e| format!("interval {interval}, round {round}: {e}"));
            if r.is_err() {
                break 'all;
            }
        }
    }
    inj.every(0)?;
    r.map(|()| t)
}

// ---------------------------------------------------------------------
// What must be back where it was.

/// What the driver and the process hold: live buffer objects and their
/// bytes (debugfs counters), the process's pinned memory (VmPin) and the
/// driver's queues per priority (debugfs state).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    bos_live: u64,
    bo_bytes_live: u64,
    vm_pin_kb: u64,
    queues_per_priority: String,
}

/// The driver's live queues per priority (debugfs state), LOW first.
fn queues_per_priority(dir: &Path) -> Result<String, String> {
    let path = dir.join("state");
    let state = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    state
        .lines()
        .find_map(|l| l.strip_prefix("queues per priority:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("{}: no 'queues per priority' line", path.display()))
}

fn held() -> Result<Held, String> {
    let dir = debugfs::dir()?;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    let vm_pin_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmPin:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmPin line in /proc/self/status")?;
    let queues_per_priority = queues_per_priority(&dir)?;
    Ok(Held {
        bos_live: debugfs::counter_in(&dir, "bos_live")?,
        bo_bytes_live: debugfs::counter_in(&dir, "bo_bytes_live")?,
        vm_pin_kb,
        queues_per_priority,
    })
}

/// Wait (up to the bound: jobs are released by a work item) until what is
/// held is back to `start`.
fn back_to(start: &Held) -> Result<(), String> {
    let t = Instant::now();
    loop {
        let now = held()?;
        if now == *start {
            return Ok(());
        }
        if t.elapsed() > BOUND {
            return Err(format!("held at the start: {start:?}; now: {now:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file's fdinfo counts no object memory (drm-total-*: 0).
fn file_holds_nothing(file: &File) -> Result<(), String> {
    let path = format!("/proc/self/fdinfo/{}", file.as_raw_fd());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let totals: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("drm-total-"))
        .collect();
    if totals.is_empty() {
        return Err(format!("{path}: no drm-total- line"));
    }
    for l in totals {
        let value = l.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
        if value.split_whitespace().next() != Some("0") {
            return Err(format!(
                "{path}: '{l}', want 0: a handle outlived its sweep"
            ));
        }
    }
    Ok(())
}

fn check_fences(fences: Fences) -> Result<String, String> {
    let deadline = Instant::now() + BOUND;
    let (mut ok, mut errors) = (0, 0);
    let mut bad = Vec::new();
    for (what, fd, expect) in fences.list.iter() {
        match (fence_status(fd, deadline), expect) {
            (Ok(1), Expect::Success | Expect::Signalled) => ok += 1,
            (Ok(s), Expect::Error) if s < 0 => errors += 1,
            (Ok(s), Expect::Signalled) if s < 0 => errors += 1,
            (Ok(s), _) => bad.push(format!("{what}: status {s}, want {expect:?}")),
            (Err(e), _) => bad.push(format!("{what}: {e}")),
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "{} of {} fences: {}",
            bad.len(),
            fences.list.len(),
            bad.join("; ")
        ));
    }
    if ok == 0 {
        return Err("no fence was published: nothing to check".into());
    }
    Ok(format!(
        "{} fences signalled: {ok} with success, {errors} with an error",
        fences.list.len()
    ))
}

fn copy_job_works(path: &Path) -> Result<(), String> {
    let f = accel::open_with_queue(path).map_err(|e| e.to_string())?;
    let job = CopyJob::new(&f, 3 * LEN).map_err(String::from)?;
    job.run(&f, &copyjob::pattern(0xfa11, 3 * LEN as usize))
        .map(drop)
        .map_err(String::from)
}

type SweepFn<'a> = Box<dyn FnOnce(&Injector, &mut Fences) -> Result<Swept, String> + 'a>;

fn main() {
    let path = match device() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("onpu-test-failinj: {e}");
            std::process::exit(1);
        }
    };
    let file = match open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("onpu-test-failinj: {e}");
            std::process::exit(1);
        }
    };
    let f = &file;
    let p = path.as_path();
    let sweeps: Vec<(&str, SweepFn)> = vec![
        ("open", Box::new(|i, _| sweep_open(i))),
        ("BO_CREATE", Box::new(|i, _| sweep_bo_create(i, f))),
        ("BO_INFO", Box::new(|i, _| sweep_bo_info(i, f))),
        ("mmap of a new object", Box::new(|i, _| sweep_mmap(i, f))),
        ("BO_CREATE_USERPTR", Box::new(|i, _| sweep_userptr(i, f))),
        (
            "CONTEXT_CREATE",
            Box::new(|i, _| sweep_context_create(i, f)),
        ),
        (
            "CONTEXT_DESTROY",
            Box::new(|i, _| sweep_context_destroy(i, f)),
        ),
        (
            "QUEUE_CREATE (default context, NORMAL)",
            Box::new(|i, _| sweep_queue_create(i, f, 0, uapi::DRM_ONPU_PRIORITY_NORMAL)),
        ),
        (
            "QUEUE_CREATE (created context, HIGH)",
            Box::new(|i, _| {
                let ctx = accel::context_create(f)
                    .map_err(|e| format!("context_create: {}", errno_name(e)))?;
                let r = sweep_queue_create(i, f, ctx, uapi::DRM_ONPU_PRIORITY_HIGH);
                accel::context_destroy(f, ctx)
                    .map_err(|e| format!("context_destroy: {}", errno_name(e)))?;
                r
            }),
        ),
        ("QUEUE_DESTROY", Box::new(|i, _| sweep_queue_destroy(i, f))),
        (
            "SUBMIT (default context)",
            Box::new(|i, fences| sweep_submit(i, false, fences)),
        ),
        (
            "SUBMIT (created context)",
            Box::new(|i, fences| sweep_submit(i, true, fences)),
        ),
        ("WAIT", Box::new(|i, _| sweep_wait(i, p, false))),
        ("WAIT_BO", Box::new(|i, _| sweep_wait(i, p, true))),
        ("GEM_CLOSE", Box::new(|i, _| sweep_gem_close(i, p))),
        ("close", Box::new(|i, fences| sweep_close(i, p, fences))),
    ];
    let finals = [
        "whole job scenarios with every Nth allocation failing (probability 100, interval N, make-it-fail): success or ENOMEM",
        "with injection off, every fence SUBMIT published signals within 10 s (with an error for a refused job)",
        "a copy job runs byte for byte after the injection",
        "no memory in the sweeps' file (fdinfo); live buffer objects, pinned pages and queues per priority back where they were",
    ];
    let mut tap = Tap::new(sweeps.len() + finals.len());
    let start = held();
    let inj = match Injector::new() {
        Ok(i) => i,
        Err(e) => {
            for (name, _) in sweeps.iter() {
                tap.check(
                    &format!("{name} under allocation failure injection"),
                    Err(e.clone()),
                );
            }
            for name in finals {
                tap.check(name, Err(e.clone()));
            }
            std::process::exit(tap.finish());
        }
    };
    let mut fences = Fences::default();
    let mut total = 0;
    for (name, run) in sweeps {
        let r = run(&inj, &mut fences).map(|s| {
            total += s.points;
            tap.done(&format!(
                "{name}: {} allocation points, each failed once ({} calls refused with ENOMEM)",
                s.points, s.refused
            ));
        });
        tap.check(&format!("{name} under allocation failure injection: success or ENOMEM, nothing left half done"), r);
    }
    tap.done(&format!("{total} allocation points in all"));
    let r = interval_phase(&inj, p, &mut fences).map(|t| {
        tap.done(&format!(
            "{} rounds at intervals {INTERVALS:?}: {} calls armed, {} refused with ENOMEM",
            INTERVALS.len() as u32 * ROUNDS,
            t.calls,
            t.refused
        ))
    });
    tap.check(finals[0], r);
    drop(inj);
    let r = check_fences(fences).map(|text| tap.done(&text));
    tap.check(finals[1], r);
    tap.check(finals[2], copy_job_works(p));
    // The sweeps on this file closed every handle they got.
    let no_memory = file_holds_nothing(&file);
    drop(file);
    tap.check(
        finals[3],
        no_memory.and_then(|()| start.and_then(|s| back_to(&s))),
    );
    std::process::exit(tap.finish());
}
