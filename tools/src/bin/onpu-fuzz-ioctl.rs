//! onpu-fuzz-ioctl: call every ioctl of the onpu device with random and
//! mutated arguments (handles, sizes, flags, user pointers, padding,
//! syncobjs, command buffers of random instructions), from several threads
//! at once on private and shared files. Bounded in calls and time,
//! reproducible from the seed. The kernel must stay quiet (the harness
//! fails the run on any Oops/WARN/KASAN/kmemleak report) and the device
//! must still run a correct job at the end.
//!
//! The run fails if it made fewer calls than asked (the time bound cut it
//! short) or a thread could not open its own file.
//!
//!   onpu-fuzz-ioctl [CALLS] [THREADS] [SEED] [SECONDS]
//!   (defaults: 1000000 calls, 4 threads, seed 1, at most 600 s)

use npu::device::raw::{self as accel, Mapping};
use npu_isa::{assemble, Insn, Strided};
use npu_tools::args::Args;
use npu_tools::copyjob::{self, CopyJob};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use npu_uapi::drm_core;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A value that is often interesting: 0, small, a boundary, or random.
    fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => self.below(16),
            2 => u64::MAX - self.below(4),
            3 => 1 << self.below(64),
            4 => (1u64 << self.below(64)).wrapping_sub(1),
            5 => u64::from(u32::MAX),
            _ => self.next(),
        }
    }
}

/// Handles this thread knows: often valid, sometimes stale.
#[derive(Default)]
struct Pool {
    bos: Vec<u32>,
    /// The userptr objects among `bos`, oldest first: at most
    /// MAX_USERPTRS, each pinning (and DMA-mapping) the same pages again.
    userptrs: Vec<u32>,
    syncobjs: Vec<u32>,
    seqnos: Vec<u64>,
    queues: Vec<u32>,
}

impl Pool {
    fn pick(rng: &mut Rng, v: &[u32]) -> u32 {
        if v.is_empty() || rng.chance(15) {
            rng.value() as u32
        } else {
            v[rng.below(v.len() as u64) as usize]
        }
    }
}

/// The page size userptr objects are made of.
const USER_PAGE: u64 = 4096;
/// Live userptr objects per pool (see `Pool::userptrs`).
const MAX_USERPTRS: usize = 8;

/// Largest object the raw-argument calls may create.
const RAW_BO_MAX: u64 = 64 * 1024;

/// Before a BO_CREATE whose argument is `scratch` (random bytes, or what
/// an earlier call left there): a size of at most RAW_BO_MAX. Random bytes
/// can ask for any size up to DRM_ONPU_BO_MAX_SIZE, and a job that names
/// such an object (15 % of handle picks are random, and handles are small
/// numbers) pins all its pages: a 4 GiB object sends the 1 GiB guest's OOM
/// killer after this process. A small value stays small when the kernel
/// copies fewer than its 8 bytes (a short size in a random command number).
/// Call 1 covers the large and out-of-range sizes with objects it tracks.
fn defuse_bo_create(rng: &mut Rng, scratch: &mut [u8; 256]) {
    let size = rng.below(RAW_BO_MAX + 1);
    scratch[..8].copy_from_slice(&size.to_ne_bytes());
}

/// One random ioctl on `file`; returns whether it succeeded.
fn one_call(
    file: &File,
    rng: &mut Rng,
    pool: &mut Pool,
    scratch: &mut [u8; 256],
    user_pages: u64,
    cmd: Option<(u32, u64)>,
) -> bool {
    let bo = Pool::pick(rng, &pool.bos);
    let ptr = |rng: &mut Rng, scratch: &mut [u8; 256]| -> u64 {
        // Valid memory, NULL, a kernel address, or garbage.
        match rng.below(4) {
            0 => scratch.as_mut_ptr() as u64,
            1 => 0,
            2 => 0xffff_8880_0000_0000 + rng.below(1 << 30),
            _ => rng.value(),
        }
    };
    match rng.below(15) {
        0 if rng.chance(50) => {
            // QUERY: any query number and size; the data pointer is
            // our scratch buffer (the driver writes at most the struct's
            // 64 bytes), NULL or a kernel address, never a random one
            // that might be this process's own memory.
            let mut q = uapi::drm_onpu_query {
                query: rng.below(4) as u32,
                flags: if rng.chance(10) { 1 } else { 0 },
                size: match rng.below(3) {
                    0 => 0,
                    1 => rng.below(256) as u32,
                    _ => rng.value() as u32,
                },
                pad: if rng.chance(10) { 1 } else { 0 },
                data: match rng.below(3) {
                    0 => scratch.as_mut_ptr() as u64,
                    1 => 0,
                    _ => 0xffff_8880_0000_0000 + rng.below(1 << 30),
                },
            };
            accel::ioctl(file, &mut q).is_ok()
        }
        0 => {
            let mut p = uapi::drm_onpu_get_param {
                param: rng.below(20) as u32,
                pad: if rng.chance(10) { 1 } else { 0 },
                value: rng.value(),
            };
            accel::ioctl(file, &mut p).is_ok()
        }
        1 => {
            let size = match rng.below(6) {
                0 => rng.value(),
                1 => uapi::DRM_ONPU_BO_MAX_SIZE + rng.below(4096),
                _ => 1 + rng.below(256 * 1024),
            };
            // Keep memory bounded: real allocations only up to 256 KiB here.
            let size = if size <= uapi::DRM_ONPU_BO_MAX_SIZE && size > 256 * 1024 {
                0
            } else {
                size
            };
            let mut c = uapi::drm_onpu_bo_create {
                size,
                flags: if rng.chance(10) {
                    rng.value() as u32
                } else {
                    0
                },
                ..Default::default()
            };
            let ok = accel::ioctl(file, &mut c).is_ok();
            if ok {
                pool.bos.push(c.handle);
                if pool.bos.len() > 48 {
                    let h = pool.bos.remove(0);
                    let _ = accel::gem_close(file, h);
                }
            }
            ok
        }
        2 => {
            let mut i = uapi::drm_onpu_bo_info {
                handle: bo,
                flags: if rng.chance(10) { 1 } else { 0 },
                ..Default::default()
            };
            accel::ioctl(file, &mut i).is_ok()
        }
        3 | 4 => {
            // SUBMIT: mostly mutated fields around a valid request.
            let (cmd_handle, cmd_size) = cmd.unwrap_or((bo, 64));
            let n = rng.below(4) as usize;
            for k in 0..n.min(32) {
                let r = uapi::drm_onpu_bo_ref {
                    handle: Pool::pick(rng, &pool.bos),
                    flags: if rng.chance(80) {
                        1 + rng.below(3) as u32
                    } else {
                        rng.value() as u32
                    },
                };
                scratch[k * 8..k * 8 + 4].copy_from_slice(&r.handle.to_ne_bytes());
                scratch[k * 8 + 4..k * 8 + 8].copy_from_slice(&r.flags.to_ne_bytes());
            }
            // Syncs at 64.. (inputs) and 128.. (outputs) of the scratch
            // buffer, mostly valid handles and flags.
            let sync_at = |rng: &mut Rng, scratch: &mut [u8; 256], at: usize, n: usize| {
                for k in 0..n {
                    let s = uapi::drm_onpu_sync {
                        handle: Pool::pick(rng, &pool.syncobjs),
                        flags: if rng.chance(80) {
                            0
                        } else {
                            rng.value() as u32
                        },
                        point: if rng.chance(80) { 0 } else { rng.value() },
                    };
                    let o = at + k * 16;
                    scratch[o..o + 4].copy_from_slice(&s.handle.to_ne_bytes());
                    scratch[o + 4..o + 8].copy_from_slice(&s.flags.to_ne_bytes());
                    scratch[o + 8..o + 16].copy_from_slice(&s.point.to_ne_bytes());
                }
            };
            let n_in = if rng.chance(80) {
                0
            } else {
                rng.below(3) as usize
            };
            let n_out = if rng.chance(70) {
                0
            } else {
                1 + rng.below(2) as usize
            };
            sync_at(rng, scratch, 64, n_in);
            sync_at(rng, scratch, 128, n_out);
            // Mostly the element's own stride; sometimes short, wide or huge.
            let stride = |rng: &mut Rng, size: u32| -> u32 {
                match rng.below(20) {
                    0 => rng.value() as u32,
                    1 => size - 1,
                    2 => size + 8,
                    _ => size,
                }
            };
            let base = scratch.as_ptr() as u64;
            let array = |rng: &mut Rng, scratch: &mut [u8; 256], at: u64| {
                if rng.chance(85) {
                    base + at
                } else {
                    ptr(rng, scratch)
                }
            };
            let mut req = uapi::drm_onpu_submit {
                queue_id: if rng.chance(90) {
                    accel::FIRST_QUEUE
                } else {
                    Pool::pick(rng, &pool.queues)
                },
                cmdbuf_handle: if rng.chance(90) {
                    cmd_handle
                } else {
                    Pool::pick(rng, &pool.bos)
                },
                cmdbuf_size: if rng.chance(85) {
                    cmd_size as u32
                } else {
                    rng.value() as u32
                },
                cmdbuf_offset: if rng.chance(90) { 0 } else { rng.value() },
                bos: uapi::drm_onpu_obj_array {
                    stride: stride(rng, 8),
                    count: if rng.chance(90) {
                        n as u32
                    } else {
                        rng.value() as u32
                    },
                    array: array(rng, scratch, 0),
                },
                in_syncs: uapi::drm_onpu_obj_array {
                    stride: stride(rng, 16),
                    count: n_in as u32,
                    array: array(rng, scratch, 64),
                },
                out_syncs: uapi::drm_onpu_obj_array {
                    stride: stride(rng, 16),
                    count: n_out as u32,
                    array: array(rng, scratch, 128),
                },
                timeout_ms: if rng.chance(90) {
                    100 + rng.below(200) as u32
                } else {
                    rng.value() as u32
                },
                flags: if rng.chance(5) { rng.value() as u32 } else { 0 },
                pad: if rng.chance(5) { 1 } else { 0 },
                seqno: 0,
            };
            let ok = accel::submit(file, &mut req).is_ok();
            if ok {
                pool.seqnos.push(req.seqno);
                if pool.seqnos.len() > 64 {
                    pool.seqnos.remove(0);
                }
            }
            ok
        }
        5 => {
            let seqno = if pool.seqnos.is_empty() || rng.chance(20) {
                rng.value()
            } else {
                pool.seqnos[rng.below(pool.seqnos.len() as u64) as usize]
            };
            // An absolute deadline: mostly up to 100 us ahead, sometimes
            // 0, negative or long past (never far ahead: a job that still
            // runs would stall this thread until then).
            let now = accel::monotonic_ns().unwrap_or(0);
            let mut w = uapi::drm_onpu_wait {
                seqno,
                timeout_abs_ns: match rng.below(10) {
                    0 => 0,
                    1 => -(rng.value() as i64).saturating_abs(),
                    2 => now - rng.below(1 << 40) as i64,
                    _ => now + rng.below(100_000) as i64,
                },
                flags: if rng.chance(5) { 1 } else { 0 },
                profile_size: if rng.chance(5) { rng.value() as u32 } else { 0 },
                profile: if rng.chance(5) { ptr(rng, scratch) } else { 0 },
                ..Default::default()
            };
            accel::ioctl(file, &mut w).is_ok()
        }
        6 => {
            let now = accel::monotonic_ns().unwrap_or(0);
            let mut w = uapi::drm_onpu_wait_bo {
                handle: bo,
                flags: if rng.chance(5) { 1 } else { 0 },
                timeout_abs_ns: now + rng.below(100_000) as i64
                    - if rng.chance(5) { 200_000 } else { 0 },
            };
            accel::ioctl(file, &mut w).is_ok()
        }
        7 => {
            let ok = accel::gem_close(file, bo).is_ok();
            pool.bos.retain(|&h| h != bo);
            ok
        }
        8 => match accel::prime_export(file, bo) {
            Ok(fd) => {
                if let Ok(h) = accel::prime_import(file, &fd) {
                    pool.bos.push(h);
                }
                true
            }
            Err(_) => false,
        },
        9 => {
            if rng.chance(50) || pool.syncobjs.len() > 16 {
                let h = Pool::pick(rng, &pool.syncobjs);
                let mut d = drm_core::drm_syncobj_destroy { handle: h, pad: 0 };
                pool.syncobjs.retain(|&x| x != h);
                accel::ioctl(file, &mut d).is_ok()
            } else {
                let r = accel::syncobj_create(file, rng.chance(50));
                if let Ok(h) = r {
                    pool.syncobjs.push(h);
                }
                r.is_ok()
            }
        }
        10 => {
            // A driver command number with a random size and direction.
            let nr = uapi::DRM_COMMAND_BASE + rng.below(16) as u32;
            let size = rng.below(200) as u32;
            let dir = rng.below(4) as u32;
            let req = (dir << 30) | (size << 16) | (u32::from(uapi::DRM_IOCTL_BASE) << 8) | nr;
            for b in scratch.iter_mut() {
                *b = rng.next() as u8;
            }
            if nr == uapi::DRM_COMMAND_BASE + uapi::DRM_ONPU_BO_CREATE {
                defuse_bo_create(rng, scratch);
            }
            // SAFETY: the argument points at 256 valid bytes, more than any
            // size encoded here; the kernel copies at most `size`.
            unsafe {
                libc::ioctl(file.as_raw_fd(), req as libc::c_ulong, scratch.as_mut_ptr()) >= 0
            }
        }
        11 => {
            // A real ioctl with a bad argument pointer.
            let reqs = [
                uapi::DRM_IOCTL_ONPU_GET_PARAM,
                uapi::DRM_IOCTL_ONPU_QUERY,
                uapi::DRM_IOCTL_ONPU_BO_CREATE,
                uapi::DRM_IOCTL_ONPU_SUBMIT,
                uapi::DRM_IOCTL_ONPU_WAIT,
                uapi::DRM_IOCTL_ONPU_WAIT_BO,
                uapi::DRM_IOCTL_ONPU_BO_INFO,
                uapi::DRM_IOCTL_ONPU_BO_CREATE_USERPTR,
                uapi::DRM_IOCTL_ONPU_QUEUE_CREATE,
                uapi::DRM_IOCTL_ONPU_QUEUE_DESTROY,
            ];
            let req = reqs[rng.below(reqs.len() as u64) as usize];
            let p = ptr(rng, scratch);
            if req == uapi::DRM_IOCTL_ONPU_BO_CREATE && p == scratch.as_ptr() as u64 {
                defuse_bo_create(rng, scratch);
            }
            // SAFETY: the kernel validates the user pointer; a bad one is
            // EFAULT, a valid one is our scratch buffer (256 bytes).
            unsafe { libc::ioctl(file.as_raw_fd(), req as libc::c_ulong, p as *mut u8) >= 0 }
        }
        12 => {
            // A userptr object: of this thread's user pages (valid memory
            // that random jobs may scribble on), or of a random pointer;
            // sizes and flags mostly valid.
            let page = USER_PAGE;
            let user_ptr = match rng.below(3) {
                0 | 1 => user_pages,
                _ => ptr(rng, scratch),
            };
            let size = match rng.below(4) {
                0 => page,
                1 => 2 * page,
                2 => rng.below(3 * page),
                _ => rng.value(),
            };
            let flags = match rng.below(4) {
                0 => uapi::DRM_ONPU_BO_READ_ONLY,
                1 => rng.value() as u32,
                _ => 0,
            };
            let r = accel::bo_create_userptr(file, user_ptr, size, flags);
            if let Ok(b) = r {
                pool.bos.push(b.handle);
                pool.userptrs.push(b.handle);
                if pool.userptrs.len() > MAX_USERPTRS {
                    let h = pool.userptrs.remove(0);
                    pool.bos.retain(|&x| x != h);
                    let _ = accel::gem_close(file, h);
                }
            }
            r.is_ok()
        }
        13 => {
            // QUEUE_CREATE (mostly valid priorities; REALTIME works as
            // root) or QUEUE_DESTROY of a known or random id. The first
            // queue, which submissions use, stays.
            if rng.chance(50) || pool.queues.len() > 32 {
                let id = Pool::pick(rng, &pool.queues);
                pool.queues.retain(|&q| q != id);
                let mut d = uapi::drm_onpu_queue_destroy {
                    queue_id: if id == accel::FIRST_QUEUE { 0 } else { id },
                    pad: if rng.chance(5) { 1 } else { 0 },
                };
                accel::ioctl(file, &mut d).is_ok()
            } else {
                let mut q = uapi::drm_onpu_queue_create {
                    context_id: if rng.chance(90) {
                        0
                    } else {
                        rng.value() as u32
                    },
                    priority: if rng.chance(90) {
                        rng.below(4) as u32
                    } else {
                        rng.value() as u32
                    },
                    flags: if rng.chance(5) { rng.value() as u32 } else { 0 },
                    queue_id: 0,
                };
                let ok = accel::ioctl(file, &mut q).is_ok();
                if ok {
                    pool.queues.push(q.queue_id);
                }
                ok
            }
        }
        _ => {
            // mmap a random handle's offset and touch it. Not an object
            // larger than 1 MiB: the raw-ioctl calls can make objects up to
            // DRM_ONPU_BO_MAX_SIZE, and a CPU mapping of a shmem object
            // populates all its pages (a 4 GiB one sends the guest's OOM
            // killer after this process).
            match accel::bo_info(file, bo) {
                Ok(b) if b.size > 1 << 20 => false,
                Ok(b) => {
                    if let Ok(mut m) = Mapping::new(file, &b) {
                        let s = m.as_mut_slice();
                        let i = rng.below(s.len() as u64) as usize;
                        s[i] = s[i].wrapping_add(1);
                    }
                    true
                }
                Err(_) => false,
            }
        }
    }
}

/// A command buffer of random (mostly valid-looking) instructions in a
/// fresh object of `file`: (handle, size).
fn random_cmdbuf(file: &File, rng: &mut Rng) -> Option<(u32, u64)> {
    let bo = accel::bo_create(file, 4096).ok()?;
    let va = accel::bo_npu_addr(file, bo.handle).ok()?;
    let n = 1 + rng.below(6) as usize;
    let mut code = Vec::new();
    for _ in 0..n {
        let c = Strided::contiguous(64 + rng.below(4096) as u32);
        let insn = match rng.below(5) {
            0 => Insn::DmaLoad {
                va: if rng.chance(50) { va } else { rng.value() },
                sram: rng.below(1 << 20) as u32,
                mem: c,
                sram_layout: c,
            },
            1 => Insn::DmaStore {
                va: if rng.chance(50) { va } else { rng.value() },
                sram: rng.below(1 << 20) as u32,
                mem: c,
                sram_layout: c,
            },
            2 => Insn::Fill {
                dst: rng.below(1 << 21) as u32 & !3,
                len: rng.below(8192) as u32 & !3,
                pattern: rng.next() as u32,
            },
            3 => Insn::Nop,
            _ => Insn::Barrier,
        };
        code.extend_from_slice(&assemble(&[insn]));
        if rng.chance(10) {
            let at = code.len() - 64 + rng.below(64) as usize;
            code[at] ^= 1 << rng.below(8);
        }
    }
    if rng.chance(90) {
        code.extend_from_slice(&assemble(&[Insn::End]));
    }
    Mapping::new(file, &bo).ok()?.as_mut_slice()[..code.len()].copy_from_slice(&code);
    Some((bo.handle, code.len() as u64))
}

fn main() {
    let args = Args::parse("[CALLS] [THREADS] [SEED] [SECONDS]", &[]);
    args.at_most(4);
    let (calls, threads, seed, seconds) = (
        args.number(0, "CALLS", 1_000_000),
        args.number(1, "THREADS", 4),
        args.number(2, "SEED", 1),
        args.number(3, "SECONDS", 600),
    );
    if threads == 0 || threads > 64 {
        args.fail("THREADS must be 1 to 64");
    }
    let mut tap = Tap::new(2);
    let path = match accel::find_device() {
        Ok(p) => p,
        Err(e) => {
            println!("# {e}");
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let shared = match accel::open_with_queue(&path) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            println!("# {}: {e}", path.display());
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let done = Arc::new(AtomicU64::new(0));
    let ok_calls = Arc::new(AtomicU64::new(0));
    let open_failures = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            // Every call asked for is made: the first threads take one more.
            let per_thread = calls / threads + u64::from(t < calls % threads);
            let (path, shared, done, ok_calls, open_failures) = (
                path.clone(),
                shared.clone(),
                done.clone(),
                ok_calls.clone(),
                open_failures.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(t + 1) | 1);
                let open = || {
                    let f = accel::open_with_queue(&path);
                    if let Err(e) = &f {
                        println!("# thread {t}: {}: {e}", path.display());
                        open_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    f.ok()
                };
                let mut own = open();
                let mut pool = Pool::default();
                let mut shared_pool = Pool::default();
                let mut scratch = [0u8; 256];
                // Never freed: pinned by userptr objects, written by jobs.
                let user_mem: &'static mut [u8] =
                    Box::leak(vec![0u8; 3 * USER_PAGE as usize].into_boxed_slice());
                let user_pages = (user_mem.as_ptr() as u64).next_multiple_of(USER_PAGE);
                let mut cmd = own.as_ref().and_then(|f| random_cmdbuf(f, &mut rng));
                for i in 0..per_thread {
                    if i % 1024 == 0 && Instant::now() > deadline {
                        break;
                    }
                    if i % 4096 == 4095 {
                        // Reopen: the old file closes with whatever it had.
                        own = open();
                        pool = Pool::default();
                        cmd = own.as_ref().and_then(|f| random_cmdbuf(f, &mut rng));
                    } else if i % 512 == 511 {
                        cmd = own.as_ref().and_then(|f| random_cmdbuf(f, &mut rng));
                    }
                    let ok = match own.as_ref() {
                        Some(f) if !rng.chance(25) => {
                            one_call(f, &mut rng, &mut pool, &mut scratch, user_pages, cmd)
                        }
                        _ => one_call(
                            &shared,
                            &mut rng,
                            &mut shared_pool,
                            &mut scratch,
                            user_pages,
                            None,
                        ),
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                    if ok {
                        ok_calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut panicked = false;
    for h in handles {
        panicked |= h.join().is_err();
    }
    let (n, ok, failed_opens) = (
        done.load(Ordering::Relaxed),
        ok_calls.load(Ordering::Relaxed),
        open_failures.load(Ordering::Relaxed),
    );
    let secs = start.elapsed().as_secs_f64();
    println!("# {n} ioctls from {threads} threads (seed {seed}) in {secs:.1} s, {ok} succeeded");
    let fuzzed = if panicked {
        Err("a fuzzing thread panicked".to_string())
    } else if failed_opens > 0 {
        Err(format!("{failed_opens} opens of the device failed"))
    } else if n < calls {
        Err(format!(
            "only {n} of {calls} calls made before the {seconds} s bound"
        ))
    } else {
        Ok(())
    };
    tap.done(&format!("{n} ioctls"));
    tap.check(
        &format!("{calls} fuzzed ioctls returned (no hang, no crash)"),
        fuzzed,
    );
    // The device still works: a correct job from a fresh file.
    let after = (|| -> Result<(), String> {
        let f = accel::open_with_queue(&path).map_err(|e| e.to_string())?;
        CopyJob::new(&f, 4096)?
            .run(&f, &copyjob::pattern(0x77, 4096))
            .map_err(|e| format!("job after fuzzing: {e}"))?;
        Ok(())
    })();
    tap.check("a correct job runs after the fuzzing", after);
    std::process::exit(tap.finish());
}
