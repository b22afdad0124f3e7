//! onpu-stress-lifetime: processes killed with jobs in flight, files closed
//! with jobs queued, the device unbound and rebound and the module unloaded
//! and reloaded while other processes open, map and submit. Afterwards the
//! driver's live buffer count and the system's shmem are back where they
//! started and a fresh process's job is right (kmemleak is checked by the
//! harness at the end of the run). No unbind makes the driver log a bogus
//! completion record (a record the device wrote before unbind's reset is
//! a real outcome, not a device error).
//!
//!   onpu-stress-lifetime [ITERATIONS]     (default 100; needs /lib/modules/onpu.ko)

use nix::sys::socket;
use npu::device::raw::{self as accel, Mapping};
use npu_tools::args::Args;
use npu_tools::child::{self, Counters, Exit};
use npu_tools::copyjob::{CopyJob, JobError};
use npu_tools::kmod;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const LEN: u32 = 65536;
const FILL: u8 = 0x3c;

/// A copy job of LEN bytes, `jobs` submissions of it; waits for the last
/// and checks its data when `wait` is set.
fn submit_copies(file: &File, jobs: usize, wait: bool) -> Result<(), JobError> {
    let job = CopyJob::new(file, LEN)?;
    job.fill_src(file, &[FILL; LEN as usize])?;
    job.clear_dst(file)?;
    let mut last = 0;
    for _ in 0..jobs {
        last = job.submit(file, 0)?;
    }
    if wait {
        CopyJob::wait_ok(file, last)?;
        job.check_dst(file, &[FILL; LEN as usize])?;
    }
    Ok(())
}

fn fresh_job() -> Result<(), String> {
    let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|x| x.to_string())?;
    submit_copies(&file, 1, true).map_err(|e| format!("a fresh process's job: {e}"))
}

fn debugfs_counter(name: &str) -> Result<u64, String> {
    npu_tools::debugfs::counter(name)
}

fn shmem_kib() -> Result<u64, String> {
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("Shmem:")
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .ok_or_else(|| "no Shmem line in /proc/meminfo".into())
}

/// Wait until the driver's live buffers drop to `want` (jobs of killed or
/// closed files finish on their own).
fn settle_bos(want: u64) -> Result<(), String> {
    let t = Instant::now();
    loop {
        let live = debugfs_counter("bos_live")?;
        if live == want {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err(format!("{live} buffer objects still alive, want {want}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` times: a child queues 64 copy jobs and is killed with SIGKILL once
/// it says it has queued 64 (even iterations) or 32 (odd ones: the kill
/// may land while it still submits the other 32). The completed count in
/// `done`.
fn kill_with_jobs_in_flight(n: usize, done: &mut usize) -> Result<(), String> {
    let before = debugfs_counter("bos_live")?;
    for i in 0..n {
        let (ready_r, ready_w) = child::pipe()?;
        let after = if i % 2 == 0 { 64 } else { 32 };
        let victim = child::spawn(move || {
            let run = || -> Result<(), String> {
                let file =
                    accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
                submit_copies(&file, after, false)?;
                child::notify(&ready_w)?;
                submit_copies(&file, 64 - after, false)?;
                Ok(())
            };
            match run() {
                // Stay alive with the jobs queued until the parent kills us.
                Ok(()) => loop {
                    nix::unistd::pause();
                },
                Err(e) => {
                    println!("# iteration {i}: the child could not queue its jobs: {e}");
                    2
                }
            }
        })?;
        if !child::wait_notified(&ready_r)? {
            return Err(format!(
                "iteration {i}: the child ended before queueing {after} jobs ({})",
                victim.wait()?
            ));
        }
        victim.kill()?;
        match victim.wait()? {
            Exit::Signal(nix::sys::signal::Signal::SIGKILL) => {}
            e => {
                return Err(format!(
                    "iteration {i}: the child was not killed by SIGKILL: {e}"
                ))
            }
        }
        *done += 1;
    }
    settle_bos(before)?;
    fresh_job()
}

fn close_with_jobs_queued(n: usize, done: &mut usize) -> Result<(), String> {
    let before = debugfs_counter("bos_live")?;
    for i in 0..n {
        let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
        submit_copies(&file, 32, false).map_err(|e| format!("iteration {i}: {e}"))?;
        drop(file);
        *done += 1;
    }
    settle_bos(before)?;
    fresh_job()
}

/// What the workers count, in memory shared with them.
const ATTEMPTS: usize = 0;
const JOBS: usize = 1;
const GONE: usize = 2;
const BAD: usize = 3;
const STOP: usize = 4;

/// Whether a worker's failure is what a device going away mid-job gives:
/// the device is gone (ENODEV, also from mmap; ENOENT for a node that
/// disappeared), the job was cancelled, or WAIT saw it end that way.
fn device_went_away(e: &JobError) -> bool {
    match e {
        JobError::Errno { errno, .. } => {
            [libc::ENODEV, libc::ENOENT, libc::ECANCELED, libc::EIO].contains(errno)
        }
        JobError::Map(errno) => *errno == libc::ENODEV,
        JobError::Outcome { status, .. } => *status == uapi::DRM_ONPU_JOB_CANCELED,
        JobError::Data { .. } => false,
    }
}

/// Children that open, map and submit in a loop until told to stop,
/// counting in `counts` their attempts, completed jobs, failures because
/// the device went away (expected: that is the point) and other failures
/// (a wrong result on a job that did complete, an unexpected errno).
fn workers(count: usize, counts: &Counters<5>) -> Result<Vec<child::Child>, String> {
    (0..count)
        .map(|w| {
            child::spawn(|| {
                while counts.get(STOP).load(Ordering::SeqCst) == 0 {
                    let result = match accel::find_device() {
                        // Unbound or unloaded: no node.
                        Err(_) => Err(JobError::Errno {
                            op: "find device",
                            errno: libc::ENODEV,
                        }),
                        Ok(p) => match accel::open_with_queue(&p) {
                            Err(e) => Err(JobError::Errno {
                                op: "open",
                                errno: e.raw_os_error().unwrap_or(libc::EIO),
                            }),
                            Ok(file) => submit_copies(&file, 4, true),
                        },
                    };
                    let counter = match &result {
                        Ok(()) => JOBS,
                        Err(e) if device_went_away(e) => GONE,
                        Err(e) => {
                            println!("# worker {w}: unexpected: {e}");
                            BAD
                        }
                    };
                    counts.get(counter).fetch_add(1, Ordering::SeqCst);
                    counts.get(ATTEMPTS).fetch_add(1, Ordering::SeqCst);
                    // A gap with no file open, where rmmod can get through.
                    std::thread::sleep(Duration::from_millis(2));
                }
                0
            })
        })
        .collect()
}

/// Wait until counter `i` has moved past `from` (the workers did something).
fn wait_for_progress(counts: &Counters<5>, i: usize, from: u64, what: &str) -> Result<u64, String> {
    let t = Instant::now();
    loop {
        let now = counts.get(i).load(Ordering::SeqCst);
        if now > from {
            return Ok(now);
        }
        if t.elapsed() > Duration::from_secs(30) {
            return Err(format!("the workers did not {what} within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn stop_workers(pids: Vec<child::Child>, counts: &Counters<5>) -> Result<String, String> {
    counts.get(STOP).store(1, Ordering::SeqCst);
    for p in pids {
        match p.wait()? {
            Exit::Code(0) => {}
            e => return Err(format!("a worker failed: {e}")),
        }
    }
    let [jobs, gone, bad] = [JOBS, GONE, BAD].map(|i| counts.get(i).load(Ordering::SeqCst));
    let summary =
        format!("{jobs} worker jobs right, {gone} refused or cancelled as the device went away");
    println!("# {summary}, {bad} wrong");
    if bad > 0 {
        return Err(format!(
            "{bad} worker jobs failed other than by the device going away"
        ));
    }
    Ok(summary)
}

/// `n` times: unbind while two workers submit, wait until a worker has
/// tried the unbound device, bind, wait until a worker's job has completed
/// on the rebound one.
fn rebind_under_load(n: usize, done: &mut usize, load: &mut String) -> Result<(), String> {
    let pci = kmod::pci_name()?;
    let counts = Counters::<5>::new()?;
    let pids = workers(2, &counts)?;
    let mut result = wait_for_progress(&counts, JOBS, 0, "complete a job").map(|_| ());
    for i in 0..n {
        if result.is_err() {
            break;
        }
        result = (|| {
            std::fs::write("/sys/bus/pci/drivers/onpu/unbind", &pci)
                .map_err(|e| format!("unbind: {e}"))?;
            let attempts = counts.get(ATTEMPTS).load(Ordering::SeqCst);
            wait_for_progress(&counts, ATTEMPTS, attempts, "try the unbound device")?;
            std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci)
                .map_err(|e| format!("bind: {e}"))?;
            let jobs = counts.get(JOBS).load(Ordering::SeqCst);
            wait_for_progress(&counts, JOBS, jobs, "complete a job on the rebound device")?;
            Ok(())
        })()
        .map_err(|e: String| format!("iteration {i}: {e}"));
        if result.is_ok() {
            *done += 1;
        }
    }
    *load = stop_workers(pids, &counts)?;
    result?;
    fresh_job()
}

/// `n` reloads: rmmod (refused while a worker has the device open, then
/// retried), insmod, and a worker's job completes on the new module.
fn reload_under_load(
    n: usize,
    done: &mut usize,
    refused: &mut u64,
    load: &mut String,
) -> Result<(), String> {
    let counts = Counters::<5>::new()?;
    let pids = workers(2, &counts)?;
    let mut result = wait_for_progress(&counts, JOBS, 0, "complete a job").map(|_| ());
    while *done < n && result.is_ok() {
        match kmod::unload(true) {
            Ok(()) => {
                result = (|| {
                    kmod::load()?;
                    kmod::wait_for_device()?;
                    let jobs = counts.get(JOBS).load(Ordering::SeqCst);
                    wait_for_progress(
                        &counts,
                        JOBS,
                        jobs,
                        "complete a job on the reloaded module",
                    )?;
                    Ok(())
                })()
                .map_err(|e: String| format!("after reload {}: {e}", *done + 1));
                if result.is_ok() {
                    *done += 1;
                }
            }
            // A worker has the device open: the unload is refused, retry.
            Err(e) if e == libc::EWOULDBLOCK || e == libc::EBUSY => {
                *refused += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => result = Err(format!("delete_module: errno {e}")),
        }
        if *refused > 100_000 {
            result = Err("the module could never be unloaded".into());
        }
    }
    *load = stop_workers(pids, &counts)?;
    result?;
    settle_bos(0)?;
    fresh_job()
}

/// A dma-buf exported by one process, imported by another, outlives its
/// exporter: the exporter closes everything and exits; the importer still
/// reads the data through its own mapping and through a job. `n` times.
fn dmabuf_outlives_exporter(n: usize, done: &mut usize) -> Result<(), String> {
    let before = debugfs_counter("bos_live")?;
    for i in 0..n {
        // Closed on every path out of the iteration (OwnedFd).
        let (ours, theirs) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::Stream,
            None,
            socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let exporter = child::spawn(|| {
            let run = || -> Result<(), String> {
                let file =
                    accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
                let bo =
                    accel::bo_create(&file, u64::from(LEN)).map_err(|e| format!("errno {e}"))?;
                Mapping::new(&file, &bo)
                    .map_err(|e| e.to_string())?
                    .as_mut_slice()
                    .fill(0xa7);
                let fd = accel::prime_export(&file, bo.handle)
                    .map_err(|e| format!("export: errno {e}"))?;
                send_fd(&theirs, fd.as_fd())
            };
            // Everything of the exporter goes with it: file, handle, mapping.
            match run() {
                Ok(()) => 0,
                Err(e) => {
                    println!("# exporter: {e}");
                    1
                }
            }
        })?;
        match exporter.wait()? {
            Exit::Code(0) => {}
            e => return Err(format!("iteration {i}: the exporter failed ({e})")),
        }
        drop(theirs);
        let fd = recv_fd(&ours)?;
        let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
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
        CopyJob::from_src(&file, bo, LEN)
            .and_then(|job| job.run_expecting(&file, &[0xa7; LEN as usize]))
            .map_err(|e| format!("iteration {i}: a job could not read the imported buffer: {e}"))?;
        *done += 1;
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
    let args = Args::parse("[ITERATIONS]", &[]);
    args.at_most(1);
    let n = args.number(0, "ITERATIONS", 100) as usize;
    let mut tap = Tap::new(7);
    let shmem0 = shmem_kib();

    let (t, mut done) = (Instant::now(), 0);
    let r = kill_with_jobs_in_flight(n, &mut done);
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    tap.done(&format!("{done} processes killed with jobs in flight"));
    tap.check(
        &format!("kill -9 with jobs in flight x{n}: buffers freed, device fine"),
        r,
    );

    let (t, mut done) = (Instant::now(), 0);
    let r = dmabuf_outlives_exporter(n, &mut done);
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    tap.done(&format!("{done} dma-bufs read after their exporter exited"));
    tap.check(
        &format!("a dma-buf imported by another process outlives its exporter x{n}"),
        r,
    );

    let (t, mut done) = (Instant::now(), 0);
    let r = close_with_jobs_queued(n, &mut done);
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    tap.done(&format!("{done} files closed with jobs queued"));
    tap.check(
        &format!("close with jobs queued x{n}: buffers freed, device fine"),
        r,
    );

    let (t, mut done, mut load) = (Instant::now(), 0, String::new());
    let log_start = kmod::kernel_log_end();
    let r = rebind_under_load(n, &mut done, &mut load);
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    tap.done(&format!("{done} unbind/rebind cycles under load ({load})"));
    tap.check(
        &format!("unbind/rebind x{n} while two processes open, map and submit"),
        r,
    );
    // (Each rebind's probe logs "open NPU: ISA ...": proof that the log
    // was read at all. The log holds 128 KiB; a run logs about half that.)
    let bogus = log_start.and_then(|start| {
        if kmod::kernel_log_since(start, "open NPU: ISA")?.is_empty() {
            return Err(format!(
                "the kernel log shows no probe message after {done} rebinds: cannot check it"
            ));
        }
        match kmod::kernel_log_since(start, "bogus completion record")?.first() {
            None => Ok(()),
            Some(first) => Err(format!("logged: {first}")),
        }
    });
    tap.check(
        "no bogus completion record logged by the unbind/rebind cycles",
        bogus,
    );

    let (t, mut done, mut refused, mut load) = (Instant::now(), 0, 0, String::new());
    let r = reload_under_load(n, &mut done, &mut refused, &mut load);
    println!("# {:.1} s", t.elapsed().as_secs_f64());
    tap.done(&format!("{done} module reloads under load ({refused} unloads refused while a file was open; {load})"));
    tap.check(
        &format!("rmmod/insmod x{n} while two processes open, map and submit"),
        r,
    );

    let shmem1 = shmem_kib();
    // Small slack for the page cache of files the tests wrote in /tmp.
    let r = match (shmem0, shmem1) {
        (Ok(before), Ok(after)) => {
            println!("# shmem: {before} kB before, {after} kB after");
            if after <= before + 512 {
                Ok(())
            } else {
                Err(format!("shmem grew by {} kB", after - before))
            }
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    tap.check("shmem back to its starting value", r);
    std::process::exit(tap.finish());
}
