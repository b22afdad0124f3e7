//! onpu-stress-lifetime: processes killed with jobs in flight, files closed
//! with jobs queued, the device unbound and rebound and the module unloaded
//! and reloaded while other processes open, map and submit. Afterwards the
//! driver's live buffer count and the system's shmem are back where they
//! started and a fresh process's job is right (kmemleak is checked by the
//! harness at the end of the run).
//!
//!   onpu-stress-lifetime [ITERATIONS]     (default 100; needs /lib/modules/onpu.ko)

use nix::sys::socket;
use npu_isa::{assemble, Insn, Strided};
use npu_tools::accel::{self, Mapping};
use npu_tools::kmod;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Buffers of `len` bytes, a copy job between them, `jobs` submissions;
/// waits for none of them when `wait` is false.
fn submit_copies(file: &File, jobs: usize, wait: bool) -> Result<(), String> {
    let e = |x: i32| format!("errno {x}");
    let src = accel::bo_create(file, 65536).map_err(e)?;
    let dst = accel::bo_create(file, 65536).map_err(e)?;
    let cmd = accel::bo_create(file, 4096).map_err(e)?;
    let (sva, dva) = (
        accel::bo_npu_addr(file, src.handle).map_err(e)?,
        accel::bo_npu_addr(file, dst.handle).map_err(e)?,
    );
    let c = Strided::contiguous(65536);
    let code = assemble(&[
        Insn::DmaLoad {
            va: sva,
            sram: 0,
            mem: c,
            sram_layout: c,
        },
        Insn::DmaStore {
            va: dva,
            sram: 0,
            mem: c,
            sram_layout: c,
        },
        Insn::End,
    ]);
    Mapping::new(file, &cmd)
        .map_err(|x| x.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    Mapping::new(file, &src)
        .map_err(|x| x.to_string())?
        .as_mut_slice()
        .fill(0x3c);
    let refs = [
        uapi::drm_onpu_bo_ref {
            handle: src.handle,
            flags: uapi::DRM_ONPU_BO_READ,
        },
        uapi::drm_onpu_bo_ref {
            handle: dst.handle,
            flags: uapi::DRM_ONPU_BO_WRITE,
        },
    ];
    let mut last = 0;
    for _ in 0..jobs {
        last = accel::submit_simple(file, &cmd, code.len() as u32, &refs, 0).map_err(e)?;
    }
    if wait {
        let w = accel::wait(file, last, 30_000_000_000).map_err(e)?;
        if w.status != 0 {
            return Err(format!("job status {:#x}", w.status));
        }
        if Mapping::new(file, &dst)
            .map_err(|x| x.to_string())?
            .as_mut_slice()
            .iter()
            .any(|&b| b != 0x3c)
        {
            return Err("wrong data".into());
        }
    }
    Ok(())
}

fn fresh_job() -> Result<(), String> {
    let file = accel::open(&kmod::wait_for_device()?).map_err(|x| x.to_string())?;
    submit_copies(&file, 1, true)
}

fn debugfs_counter(name: &str) -> Option<u64> {
    let dir = std::fs::read_dir("/sys/kernel/debug/onpu")
        .ok()?
        .flatten()
        .next()?
        .path();
    let text = std::fs::read_to_string(dir.join("counters")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{name}: "))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn shmem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("Shmem:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Wait until the driver's live buffers drop to `want` (jobs of killed or
/// closed files finish on their own).
fn settle_bos(want: u64) -> Result<(), String> {
    let t = Instant::now();
    loop {
        let live = debugfs_counter("bos_live").ok_or("no bos_live in debugfs")?;
        if live == want {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err(format!("{live} buffer objects still alive, want {want}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fork(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `f` and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = f();
        // SAFETY: leave without the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn reap(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

fn kill_with_jobs_in_flight(n: usize) -> Result<(), String> {
    let before = debugfs_counter("bos_live").ok_or("no debugfs counters")?;
    for i in 0..n {
        let pid = fork(|| {
            let Ok(file) =
                kmod::wait_for_device().and_then(|p| accel::open(&p).map_err(|e| e.to_string()))
            else {
                return 2;
            };
            let _ = submit_copies(&file, 64, false);
            // Stay alive with the jobs queued until the parent kills us.
            std::thread::sleep(Duration::from_secs(30));
            0
        });
        std::thread::sleep(Duration::from_millis(if i % 2 == 0 { 5 } else { 40 }));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let st = reap(pid);
        if !libc::WIFSIGNALED(st) {
            return Err(format!("iteration {i}: child ended by itself ({st:#x})"));
        }
    }
    settle_bos(before)?;
    fresh_job()
}

fn close_with_jobs_queued(n: usize) -> Result<(), String> {
    let before = debugfs_counter("bos_live").ok_or("no debugfs counters")?;
    for i in 0..n {
        let file = accel::open(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
        submit_copies(&file, 32, false).map_err(|e| format!("iteration {i}: {e}"))?;
        drop(file);
    }
    settle_bos(before)?;
    fresh_job()
}

/// Children that open, map and submit in a loop until `stop` exists; they
/// tolerate the device going away (that is the point) but not a crash or
/// a wrong result on a job that did complete.
fn workers(count: usize, stop: &'static str) -> Vec<i32> {
    (0..count)
        .map(|_| {
            fork(|| {
                let mut bad = 0;
                while !std::path::Path::new(stop).exists() {
                    if let Ok(p) = accel::find_device() {
                        if let Ok(file) = accel::open(&p) {
                            if let Err(e) = submit_copies(&file, 4, true) {
                                // Unbind or unload mid-job: the job is
                                // cancelled or the device is gone.
                                let expected = [
                                    "errno 19",
                                    "errno 2",
                                    "status 0x101",
                                    "errno 125",
                                    "errno 5",
                                    "os error 19",
                                ];
                                if !expected.iter().any(|x| e.contains(x)) {
                                    println!("# worker: unexpected: {e}");
                                    bad += 1;
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                bad.min(255)
            })
        })
        .collect()
}

fn stop_workers(pids: Vec<i32>, stop: &str) -> Result<(), String> {
    std::fs::write(stop, b"").map_err(|e| e.to_string())?;
    for pid in pids {
        let st = reap(pid);
        if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
            return Err(format!("a worker failed ({st:#x})"));
        }
    }
    let _ = std::fs::remove_file(stop);
    Ok(())
}

fn rebind_under_load(n: usize) -> Result<(), String> {
    let pci = kmod::pci_name()?;
    let stop = "/tmp/stop-rebind";
    let pids = workers(2, stop);
    let mut result = Ok(());
    for i in 0..n {
        std::thread::sleep(Duration::from_millis(10));
        if let Err(e) = std::fs::write("/sys/bus/pci/drivers/onpu/unbind", &pci) {
            result = Err(format!("iteration {i}: unbind: {e}"));
            break;
        }
        if let Err(e) = std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci) {
            result = Err(format!("iteration {i}: bind: {e}"));
            break;
        }
    }
    stop_workers(pids, stop)?;
    result?;
    fresh_job()
}

fn reload_under_load(n: usize) -> Result<(u64, u64), String> {
    let stop = "/tmp/stop-reload";
    let pids = workers(2, stop);
    let (mut reloads, mut refused) = (0u64, 0u64);
    let mut result = Ok(());
    while reloads < n as u64 && result.is_ok() {
        std::thread::sleep(Duration::from_millis(5));
        match kmod::unload(true) {
            Ok(()) => {
                reloads += 1;
                if let Err(e) = kmod::load() {
                    result = Err(e);
                }
                if let Err(e) = kmod::wait_for_device() {
                    result = Err(format!("after reload {reloads}: {e}"));
                }
            }
            // A worker has the device open: the unload is refused, retry.
            Err(e) if e == libc::EWOULDBLOCK || e == libc::EBUSY => refused += 1,
            Err(e) => result = Err(format!("delete_module: errno {e}")),
        }
        if refused > 100_000 {
            result = Err("the module could never be unloaded".into());
        }
    }
    stop_workers(pids, stop)?;
    result?;
    settle_bos(0)?;
    fresh_job()?;
    Ok((reloads, refused))
}

/// A dma-buf exported by one process, imported by another, outlives its
/// exporter: the exporter closes everything and exits; the importer still
/// reads the data through its own mapping and through a job. `n` times.
fn dmabuf_outlives_exporter(n: usize) -> Result<(), String> {
    let before = debugfs_counter("bos_live").ok_or("no debugfs counters")?;
    for i in 0..n {
        // Closed on every path out of the iteration (OwnedFd).
        let (ours, theirs) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::Stream,
            None,
            socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let exporter = fork(|| {
            let run = || -> Result<(), String> {
                let file = accel::open(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
                let bo = accel::bo_create(&file, 65536).map_err(|e| format!("errno {e}"))?;
                Mapping::new(&file, &bo)
                    .map_err(|e| e.to_string())?
                    .as_mut_slice()
                    .fill(0xa7);
                let fd = accel::prime_export(&file, bo.handle)
                    .map_err(|e| format!("export: errno {e}"))?;
                send_fd(&theirs, fd.as_fd())
            };
            // Everything of the exporter goes with it: file, handle, mapping.
            i32::from(run().is_err())
        });
        let st = reap(exporter);
        if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
            return Err(format!("iteration {i}: the exporter failed"));
        }
        drop(theirs);
        let fd = recv_fd(&ours)?;
        let file = accel::open(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
        let h = accel::prime_import(&file, &fd).map_err(|e| format!("import: errno {e}"))?;
        drop(fd);
        let bo = accel::bo_info(&file, h).map_err(|e| format!("errno {e}"))?;
        if Mapping::new(&file, &bo)
            .map_err(|e| e.to_string())?
            .as_mut_slice()
            .iter()
            .any(|&b| b != 0xa7)
        {
            return Err(format!("iteration {i}: the imported buffer lost its data"));
        }
        // A job reads it too: copy it into a buffer of our own.
        let (dst, cmd) = (
            accel::bo_create(&file, 65536).map_err(|e| format!("errno {e}"))?,
            accel::bo_create(&file, 4096).map_err(|e| format!("errno {e}"))?,
        );
        let (sva, dva) = (
            accel::bo_npu_addr(&file, h).map_err(|e| format!("errno {e}"))?,
            accel::bo_npu_addr(&file, dst.handle).map_err(|e| format!("errno {e}"))?,
        );
        let c = Strided::contiguous(65536);
        let code = assemble(&[
            Insn::DmaLoad {
                va: sva,
                sram: 0,
                mem: c,
                sram_layout: c,
            },
            Insn::DmaStore {
                va: dva,
                sram: 0,
                mem: c,
                sram_layout: c,
            },
            Insn::End,
        ]);
        Mapping::new(&file, &cmd)
            .map_err(|e| e.to_string())?
            .as_mut_slice()[..code.len()]
            .copy_from_slice(&code);
        let refs = [
            uapi::drm_onpu_bo_ref {
                handle: h,
                flags: uapi::DRM_ONPU_BO_READ,
            },
            uapi::drm_onpu_bo_ref {
                handle: dst.handle,
                flags: uapi::DRM_ONPU_BO_WRITE,
            },
        ];
        let seqno = accel::submit_simple(&file, &cmd, code.len() as u32, &refs, 0)
            .map_err(|e| format!("errno {e}"))?;
        let w = accel::wait(&file, seqno, 30_000_000_000).map_err(|e| format!("errno {e}"))?;
        if w.status != 0
            || Mapping::new(&file, &dst)
                .map_err(|e| e.to_string())?
                .as_mut_slice()
                .iter()
                .any(|&b| b != 0xa7)
        {
            return Err(format!(
                "iteration {i}: a job could not read the imported buffer (status {:#x})",
                w.status
            ));
        }
    }
    settle_bos(before)
}

/// One byte carrying `fd` as SCM_RIGHTS.
fn send_fd(sock: &OwnedFd, fd: BorrowedFd<'_>) -> Result<(), String> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [socket::ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&[0])],
        &cmsg,
        socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("sendmsg: {e}"))?;
    Ok(())
}

fn recv_fd(sock: &OwnedFd) -> Result<OwnedFd, String> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("recvmsg: {e}"))? {
        if let socket::ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us
                // and nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("no descriptor received".into())
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let shmem0 = shmem_kib();
    let mut tap = Tap::new(6);
    let t = Instant::now();
    tap.check(
        &format!("kill -9 with jobs in flight x{n}: buffers freed, device fine"),
        kill_with_jobs_in_flight(n),
    );
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    tap.check(
        &format!("a dma-buf imported by another process outlives its exporter x{n}"),
        dmabuf_outlives_exporter(n),
    );
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    tap.check(
        &format!("close with jobs queued x{n}: buffers freed, device fine"),
        close_with_jobs_queued(n),
    );
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    tap.check(
        &format!("unbind/rebind x{n} while two processes open, map and submit"),
        rebind_under_load(n),
    );
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let reload = reload_under_load(n);
    if let Ok((reloads, refused)) = &reload {
        println!(
            "# {reloads} reloads ({refused} unloads refused while a file was open) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    tap.check(
        &format!("rmmod/insmod x{n} while two processes open, map and submit"),
        reload.map(|_| ()),
    );
    let shmem1 = shmem_kib();
    println!("# shmem: {shmem0} kB before, {shmem1} kB after");
    // Small slack for the page cache of files the tests wrote in /tmp.
    tap.check(
        "shmem back to its starting value",
        if shmem1 <= shmem0 + 512 {
            Ok(())
        } else {
            Err(format!("shmem grew by {} kB", shmem1 - shmem0))
        },
    );
    std::process::exit(tap.finish());
}
