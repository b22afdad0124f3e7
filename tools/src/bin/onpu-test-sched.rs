//! kselftest for the onpu job scheduler and uAPI v1 queues: SUBMIT never
//! waits for a dependency (a job depending on a syncobj that another
//! process signals later), wait-before-signal on a timeline point, output
//! timeline points and several output syncobjs, WAIT's absolute deadline
//! across a signal, the per-queue limit and QUEUE_CREATE/DESTROY's
//! errnos (REALTIME without CAP_SYS_NICE), priorities, and the lifetime of
//! jobs waiting in the scheduler: QUEUE_DESTROY and the file's close
//! cancel a job waiting for a point with no fence; a waiting job keeps its
//! objects mapped (and their addresses taken) after their handles close.
//! TAP output; run in the guest with the driver loaded.
//!
//! Order, not time, shows that SUBMIT returned before the signal: the
//! other process signals only when this one tells it to, after SUBMIT
//! returned (were SUBMIT to wait for the signal, the other process would
//! give up after 10 s and report it).

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::assemble;
use npu_tools::args::Args;
use npu_tools::copyjob;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU32, Ordering};

const SEC: i64 = 1_000_000_000;
const LEN: u32 = 4096;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

fn expect_errno<T>(r: Result<T, i32>, want: i32) -> Result<(), String> {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("got {}, want {}", errno_name(e), errno_name(want))),
        Ok(_) => Err(format!("succeeded, want {}", errno_name(want))),
    }
}

/// A device file with a copy job: `src` to `dst`, LEN bytes.
struct Ctx {
    file: File,
    cmd: Bo,
    size: u32,
    src: Bo,
    dst: Bo,
}

impl Ctx {
    fn open() -> Result<Ctx, String> {
        let path = accel::find_device().map_err(|e| e.to_string())?;
        let file = accel::open_with_queue(&path).map_err(|e| e.to_string())?;
        let bo = |size| accel::bo_create(&file, size).map_err(errno_name);
        let (cmd, src, dst) = (bo(4096)?, bo(u64::from(LEN))?, bo(u64::from(LEN))?);
        let va = |b: &Bo| accel::bo_npu_addr(&file, b.handle).map_err(errno_name);
        let (src_va, dst_va) = (va(&src)?, va(&dst)?);
        let code = assemble(&copyjob::insns(src_va, dst_va, LEN));
        Mapping::new(&file, &cmd)
            .map_err(|e| e.to_string())?
            .as_mut_slice()[..code.len()]
            .copy_from_slice(&code);
        Ok(Ctx {
            file,
            cmd,
            size: code.len() as u32,
            src,
            dst,
        })
    }

    fn fill(&self, bo: &Bo, byte: u8) -> Result<(), String> {
        Mapping::new(&self.file, bo)
            .map_err(|e| e.to_string())?
            .as_mut_slice()
            .fill(byte);
        Ok(())
    }

    fn dst_is(&self, byte: u8) -> Result<(), String> {
        let mut m = Mapping::new(&self.file, &self.dst).map_err(|e| e.to_string())?;
        match m.as_mut_slice()[..LEN as usize]
            .iter()
            .position(|&b| b != byte)
        {
            None => Ok(()),
            Some(i) => Err(format!(
                "dst byte {i} is {:#x}, want {byte:#x}",
                m.as_mut_slice()[i]
            )),
        }
    }

    /// SUBMIT the copy on `queue` with these syncs.
    fn submit(
        &self,
        queue: u32,
        ins: &[uapi::drm_onpu_sync],
        outs: &[uapi::drm_onpu_sync],
    ) -> Result<u64, i32> {
        let refs = [
            uapi::drm_onpu_bo_ref {
                handle: self.src.handle,
                flags: uapi::DRM_ONPU_BO_READ,
            },
            uapi::drm_onpu_bo_ref {
                handle: self.dst.handle,
                flags: uapi::DRM_ONPU_BO_WRITE,
            },
        ];
        let mut req = uapi::drm_onpu_submit {
            queue_id: queue,
            cmdbuf_handle: self.cmd.handle,
            cmdbuf_size: self.size,
            bos: accel::obj_array(&refs),
            in_syncs: accel::obj_array(ins),
            out_syncs: accel::obj_array(outs),
            ..Default::default()
        };
        accel::submit(&self.file, &mut req)
    }

    fn wait_ok(&self, seqno: u64) -> Result<(), String> {
        let w = accel::wait(&self.file, seqno, 10 * SEC)
            .map_err(|e| format!("wait {seqno}: {}", errno_name(e)))?;
        if w.status != uapi::DRM_ONPU_JOB_OK {
            return Err(format!("job {seqno} ended with status {:#x}", w.status));
        }
        Ok(())
    }

    /// The job has not ended (a WAIT that polls times out).
    fn not_ended(&self, seqno: u64) -> Result<(), String> {
        match accel::wait_until(&self.file, seqno, 0) {
            Err(e) if e == libc::ETIMEDOUT => Ok(()),
            Ok(_) => Err(format!(
                "job {seqno} ended before its dependency was signalled"
            )),
            Err(e) => Err(format!("poll of job {seqno}: {}", errno_name(e))),
        }
    }
}

fn wait_for_submit(handle: u32, point: u64) -> uapi::drm_onpu_sync {
    uapi::drm_onpu_sync {
        handle,
        flags: uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT,
        point,
    }
}

fn pipe() -> Result<(File, File), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() returns.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe() just created both descriptors; each is owned once.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Fork a child that waits (at most 10 s) for a byte on a pipe, then runs
/// `signal` on the shared device file and exits 0 if the byte came (2 if
/// it gave up waiting, 1 if `signal` failed). Returns the child's pid and
/// the pipe's write end.
fn signaller(
    file: &File,
    signal: impl FnOnce(&File) -> Result<(), i32>,
) -> Result<(libc::pid_t, File), String> {
    let (mut rd, wr) = pipe()?;
    // SAFETY: the test is single-threaded; the child only makes system
    // calls and exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(wr);
        let mut pfd = libc::pollfd {
            fd: rd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 10_000) } == 1;
        let mut b = [0u8; 1];
        let got = ready && rd.read(&mut b).is_ok_and(|n| n == 1);
        let code = match signal(file) {
            Err(_) => 1,
            Ok(()) if got => 0,
            Ok(()) => 2,
        };
        // SAFETY: exit the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    Ok((pid, wr))
}

fn reap(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(2) => Err(
            "the other process gave up waiting for the go: SUBMIT did not return before the signal"
                .into(),
        ),
        other => Err(format!(
            "the other process failed to signal (exit {other:?})"
        )),
    }
}

/// A job whose input syncobj is signalled by another process later:
/// SUBMIT returns first, the job runs only after the signal.
fn cross_process_signal(c: &Ctx) -> Result<(), String> {
    c.fill(&c.src, 0x5a)?;
    c.fill(&c.dst, 0)?;
    let s = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let q = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(errno_name)?;
    let (pid, mut go) = signaller(&c.file, |f| accel::syncobj_signal(f, s))?;
    // The syncobj has no fence yet: the job waits for one to be attached.
    let r = c.submit(q, &[wait_for_submit(s, 0)], &[]);
    // SUBMIT returned; only now may the other process signal.
    let seqno = match r {
        Ok(seqno) => seqno,
        Err(e) => {
            let _ = go.write_all(b"g");
            let _ = reap(pid);
            return Err(format!("submit: {}", errno_name(e)));
        }
    };
    let before = c.not_ended(seqno).and_then(|()| c.dst_is(0));
    go.write_all(b"g").map_err(|e| e.to_string())?;
    reap(pid)?;
    before?;
    c.wait_ok(seqno)?;
    c.dst_is(0x5a)?;
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    accel::syncobj_destroy(&c.file, s).map_err(errno_name)
}

/// Wait-before-signal on a timeline point, signalled by another process.
fn timeline_wait_before_signal(c: &Ctx) -> Result<(), String> {
    c.fill(&c.src, 0x33)?;
    c.fill(&c.dst, 0)?;
    let t = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    // Without WAIT_FOR_SUBMIT a point with no fence is an error.
    let plain = uapi::drm_onpu_sync {
        handle: t,
        flags: 0,
        point: 5,
    };
    expect_errno(c.submit(accel::FIRST_QUEUE, &[plain], &[]), libc::EINVAL)
        .map_err(|e| format!("point without a fence: {e}"))?;
    let q = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(errno_name)?;
    let (pid, mut go) = signaller(&c.file, |f| accel::syncobj_timeline_signal(f, t, 5))?;
    let r = c.submit(q, &[wait_for_submit(t, 5)], &[]);
    let seqno = match r {
        Ok(s) => s,
        Err(e) => {
            let _ = go.write_all(b"g");
            let _ = reap(pid);
            return Err(format!("submit: {}", errno_name(e)));
        }
    };
    let before = c.not_ended(seqno);
    go.write_all(b"g").map_err(|e| e.to_string())?;
    reap(pid)?;
    before?;
    c.wait_ok(seqno)?;
    c.dst_is(0x33)?;
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    accel::syncobj_destroy(&c.file, t).map_err(errno_name)
}

/// One job signals timeline points of two syncobjs and a binary syncobj;
/// a point not above a timeline's last is refused; a later job waits for
/// a point the first one signalled.
fn out_points(c: &Ctx) -> Result<(), String> {
    let t1 = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let t2 = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let b = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let outs = [
        uapi::drm_onpu_sync {
            handle: t1,
            flags: 0,
            point: 3,
        },
        uapi::drm_onpu_sync {
            handle: t2,
            flags: 0,
            point: 7,
        },
        accel::sync(b),
    ];
    let q1 = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(errno_name)?;
    let first = c
        .submit(q1, &[], &outs)
        .map_err(|e| format!("submit: {}", errno_name(e)))?;
    // Point 3 exists now: 3 and 2 are not above it.
    for p in [3, 2] {
        let again = [uapi::drm_onpu_sync {
            handle: t1,
            flags: 0,
            point: p,
        }];
        expect_errno(c.submit(q1, &[], &again), libc::EINVAL)
            .map_err(|e| format!("out point {p} after 3: {e}"))?;
    }
    // A job on another queue waits for point 7 of t2 and signals point 4 of t1.
    let q = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(errno_name)?;
    let ins = [uapi::drm_onpu_sync {
        handle: t2,
        flags: 0,
        point: 7,
    }];
    let outs2 = [uapi::drm_onpu_sync {
        handle: t1,
        flags: 0,
        point: 4,
    }];
    let second = c
        .submit(q, &ins, &outs2)
        .map_err(|e| format!("submit 2: {}", errno_name(e)))?;
    c.wait_ok(first)?;
    c.wait_ok(second)?;
    accel::syncobj_wait(&c.file, b, 1000)
        .map_err(|e| format!("binary out syncobj: {}", errno_name(e)))?;
    for (t, want) in [(t1, 4), (t2, 7)] {
        let got = accel::syncobj_query(&c.file, t).map_err(errno_name)?;
        if got != want {
            return Err(format!(
                "timeline {t}: last signalled point {got}, want {want}"
            ));
        }
    }
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    accel::queue_destroy(&c.file, q1).map_err(errno_name)?;
    for s in [t1, t2, b] {
        accel::syncobj_destroy(&c.file, s).map_err(errno_name)?;
    }
    Ok(())
}

static ALARMS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    ALARMS.fetch_add(1, Ordering::SeqCst);
}

/// WAIT with an absolute deadline, interrupted by SIGALRM (SA_RESTART):
/// the restarted call ends at the same deadline, not a whole timeout
/// later.
fn deadline_across_signal(c: &Ctx) -> Result<(), String> {
    let s = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let q = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(errno_name)?;
    let seqno = c
        .submit(q, &[wait_for_submit(s, 0)], &[])
        .map_err(|e| format!("submit: {}", errno_name(e)))?;
    // SAFETY: a handler that only touches an atomic; SA_RESTART so that
    // the kernel restarts the interrupted WAIT itself.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
    }
    ALARMS.store(0, Ordering::SeqCst);
    let start = accel::monotonic_ns().map_err(errno_name)?;
    let deadline = start + SEC;
    // SIGALRM every 200 ms for 4 s, from a second thread: a WAIT that
    // restarted with a relative timeout would start its whole second again
    // after each one and end no earlier than 5 s after the start; with the
    // absolute deadline it ends at 1 s. The 3 s between the two is what
    // the check below leaves for a slow (loaded, emulated) guest.
    // SAFETY: pthread_self() has no preconditions.
    let waiter = unsafe { libc::pthread_self() };
    let sender = std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            // SAFETY: the waiting thread outlives this one (joined below).
            unsafe { libc::pthread_kill(waiter, libc::SIGALRM) };
        }
    });
    let r = accel::wait_until(&c.file, seqno, deadline);
    let end = accel::monotonic_ns().map_err(errno_name)?;
    let alarms = ALARMS.load(Ordering::SeqCst);
    let _ = sender.join();
    // Let the job run and reap it.
    accel::syncobj_signal(&c.file, s).map_err(errno_name)?;
    c.wait_ok(seqno)?;
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    accel::syncobj_destroy(&c.file, s).map_err(errno_name)?;
    expect_errno(r, libc::ETIMEDOUT).map_err(|e| format!("the wait: {e}"))?;
    if alarms == 0 {
        return Err("no SIGALRM arrived during the wait".into());
    }
    if end < deadline {
        return Err(format!(
            "the wait ended {} ms before its deadline",
            (deadline - end) / 1_000_000
        ));
    }
    // A restart with the whole timeout would end 4 s or more after it.
    if end - deadline > 3 * SEC {
        return Err(format!(
            "the wait ended {} ms after its deadline: restarted with a relative timeout?",
            (end - deadline) / 1_000_000
        ));
    }
    println!(
        "# the wait, interrupted {alarms} times, ended {} us after its deadline",
        (end - deadline) / 1000
    );
    Ok(())
}

/// A queue holds at most DRM_ONPU_MAX_QUEUE_JOBS jobs that have not ended.
fn queue_limit(c: &Ctx) -> Result<(), String> {
    let q = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_LOW).map_err(errno_name)?;
    let s = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let mut seqnos = Vec::new();
    let mut result = Ok(());
    for i in 0..uapi::DRM_ONPU_MAX_QUEUE_JOBS {
        match c.submit(q, &[wait_for_submit(s, 0)], &[]) {
            Ok(n) => seqnos.push(n),
            Err(e) => {
                result = Err(format!(
                    "job {i} of {}: {}",
                    uapi::DRM_ONPU_MAX_QUEUE_JOBS,
                    errno_name(e)
                ));
                break;
            }
        }
    }
    if result.is_ok() {
        result =
            expect_errno(c.submit(q, &[wait_for_submit(s, 0)], &[]), libc::EAGAIN).map_err(|e| {
                format!(
                    "job {} of a full queue: {e}",
                    uapi::DRM_ONPU_MAX_QUEUE_JOBS + 1
                )
            });
    }
    // Another queue is not affected (a job listing no object: listing
    // `dst` would make it wait for the blocked jobs that write it).
    if result.is_ok() {
        let mut req = uapi::drm_onpu_submit {
            queue_id: accel::FIRST_QUEUE,
            cmdbuf_handle: c.cmd.handle,
            cmdbuf_size: c.size,
            ..Default::default()
        };
        result = accel::submit(&c.file, &mut req)
            .map_err(errno_name)
            .and_then(|n| c.wait_ok(n));
        if result.is_err() {
            dump_state();
        }
    }
    accel::syncobj_signal(&c.file, s).map_err(errno_name)?;
    for n in seqnos {
        c.wait_ok(n)?;
    }
    // Room again.
    let n = c
        .submit(q, &[], &[])
        .map_err(|e| format!("after the queue drained: {}", errno_name(e)))?;
    c.wait_ok(n)?;
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    accel::syncobj_destroy(&c.file, s).map_err(errno_name)?;
    result
}

/// The driver's debugfs state (ring and queues), as TAP comments.
fn dump_state() {
    for e in std::fs::read_dir("/sys/kernel/debug/onpu")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(e.path().join("state")) {
            for l in text.lines() {
                println!("# {l}");
            }
        }
    }
}

fn queue_create_raw(file: &File, context_id: u32, priority: u32, flags: u32) -> Result<u32, i32> {
    let mut q = uapi::drm_onpu_queue_create {
        context_id,
        priority,
        flags,
        queue_id: 0,
    };
    accel::ioctl(file, &mut q)?;
    Ok(q.queue_id)
}

/// Drop CAP_SYS_NICE from the effective and permitted sets of this process.
fn drop_sys_nice() -> Result<(), String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_SYS_NICE: u32 = 23;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) != 0 {
            return Err(format!("capget: {}", std::io::Error::last_os_error()));
        }
        d[0].effective &= !(1 << CAP_SYS_NICE);
        d[0].permitted &= !(1 << CAP_SYS_NICE);
        if libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) != 0 {
            return Err(format!("capset: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// QUEUE_CREATE and QUEUE_DESTROY reject every bad field with its errno;
/// REALTIME needs CAP_SYS_NICE.
fn queue_errors(c: &Ctx) -> Result<(), String> {
    let f = &c.file;
    expect_errno(
        queue_create_raw(f, 0, uapi::DRM_ONPU_PRIORITY_REALTIME + 1, 0),
        libc::EINVAL,
    )
    .map_err(|e| format!("priority 4: {e}"))?;
    expect_errno(queue_create_raw(f, 0, 0, 1), libc::EINVAL).map_err(|e| format!("flags: {e}"))?;
    expect_errno(queue_create_raw(f, 9, 0, 0), libc::ENOENT)
        .map_err(|e| format!("unknown context: {e}"))?;
    let mut d = uapi::drm_onpu_queue_destroy {
        queue_id: 0x7777,
        pad: 0,
    };
    expect_errno(accel::ioctl(f, &mut d), libc::ENOENT)
        .map_err(|e| format!("destroy unknown: {e}"))?;
    let mut d = uapi::drm_onpu_queue_destroy {
        queue_id: accel::FIRST_QUEUE,
        pad: 1,
    };
    expect_errno(accel::ioctl(f, &mut d), libc::EINVAL).map_err(|e| format!("destroy pad: {e}"))?;
    // As root: REALTIME works.
    let rt = queue_create_raw(f, 0, uapi::DRM_ONPU_PRIORITY_REALTIME, 0)
        .map_err(|e| format!("REALTIME as root: {}", errno_name(e)))?;
    accel::queue_destroy(f, rt).map_err(errno_name)?;
    // Without CAP_SYS_NICE (in a child): EACCES for REALTIME, HIGH works.
    let (mut rd, wr) = pipe()?;
    // SAFETY: single-threaded; the child makes system calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(rd);
        let r = drop_sys_nice().and_then(|()| {
            expect_errno(
                queue_create_raw(f, 0, uapi::DRM_ONPU_PRIORITY_REALTIME, 0),
                libc::EACCES,
            )
            .map_err(|e| format!("REALTIME without CAP_SYS_NICE: {e}"))?;
            let high = queue_create_raw(f, 0, uapi::DRM_ONPU_PRIORITY_HIGH, 0)
                .map_err(|e| format!("HIGH without CAP_SYS_NICE: {}", errno_name(e)))?;
            accel::queue_destroy(f, high).map_err(errno_name)
        });
        let mut wr = wr;
        let _ = wr.write_all(r.err().unwrap_or_default().as_bytes());
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    let mut msg = String::new();
    let _ = rd.read_to_string(&mut msg);
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !msg.is_empty() {
        return Err(msg);
    }
    // At most DRM_ONPU_MAX_QUEUES per file (the first one exists already).
    let mut made = Vec::new();
    let r = loop {
        match queue_create_raw(f, 0, 0, 0) {
            Ok(q) => made.push(q),
            Err(e) => break e,
        }
        if made.len() > uapi::DRM_ONPU_MAX_QUEUES as usize {
            break 0;
        }
    };
    for q in &made {
        accel::queue_destroy(f, *q).map_err(errno_name)?;
    }
    if r != libc::ENOSPC || made.len() + 1 != uapi::DRM_ONPU_MAX_QUEUES as usize {
        return Err(format!(
            "{} queues made before {}, want {} before ENOSPC",
            made.len() + 1,
            errno_name(r),
            uapi::DRM_ONPU_MAX_QUEUES
        ));
    }
    Ok(())
}

/// Priorities: 30 LOW jobs then one HIGH job are submitted, all waiting
/// for a syncobj signalled once they are all queued (so they are ready
/// together, whatever the speed of the machine); the HIGH job runs before
/// most LOW jobs. Order, not time, tells: LOW job i copies a pattern into
/// slice i of `marks`, and the HIGH job copies all of `marks` into `snap`,
/// so `snap` shows which LOW jobs had run before it (the device runs one
/// job at a time). Every job lists `marks` as read, so implicit
/// synchronisation does not order them.
fn priorities(c: &Ctx) -> Result<(), String> {
    const LOWS: usize = 30;
    const SLICE: u32 = 256;
    let f = &c.file;
    let bo = |size: u64| -> Result<(Bo, u64), String> {
        let b = accel::bo_create(f, size).map_err(errno_name)?;
        let va = accel::bo_npu_addr(f, b.handle).map_err(errno_name)?;
        Ok((b, va))
    };
    let (marks, marks_va) = bo(u64::from(SLICE) * LOWS as u64)?;
    let (snap, snap_va) = bo(u64::from(SLICE) * LOWS as u64)?;
    let (cmd, _) = bo(64 * 1024)?;
    c.fill(&c.src, 0x77)?;
    c.fill(&marks, 0)?;
    c.fill(&snap, 0)?;
    let src_va = accel::bo_npu_addr(f, c.src.handle).map_err(errno_name)?;
    // Programs at 256-byte offsets: LOW job i at 8 KiB + 256 * i, the HIGH
    // job after them.
    let mut progs: Vec<(u64, Vec<u8>)> = vec![(0, Vec::new())];
    for i in 0..LOWS {
        let code = assemble(&copyjob::insns(
            src_va,
            marks_va + u64::from(SLICE) * i as u64,
            SLICE,
        ));
        progs.push((8192 + 256 * i as u64, code));
    }
    let high_at = 8192 + 256 * LOWS as u64;
    progs.push((
        high_at,
        assemble(&copyjob::insns(marks_va, snap_va, SLICE * LOWS as u32)),
    ));
    {
        let mut m = Mapping::new(f, &cmd).map_err(|e| e.to_string())?;
        for (at, code) in &progs {
            m.as_mut_slice()[*at as usize..*at as usize + code.len()].copy_from_slice(code);
        }
    }
    let read = |b: &Bo| uapi::drm_onpu_bo_ref {
        handle: b.handle,
        flags: uapi::DRM_ONPU_BO_READ,
    };
    let gate = accel::syncobj_create(f, false).map_err(errno_name)?;
    let ins = [wait_for_submit(gate, 0)];
    let submit = |q: u32, at: u64, len: usize, refs: &[uapi::drm_onpu_bo_ref]| {
        let mut req = uapi::drm_onpu_submit {
            queue_id: q,
            cmdbuf_handle: cmd.handle,
            cmdbuf_offset: at,
            cmdbuf_size: len as u32,
            bos: accel::obj_array(refs),
            in_syncs: accel::obj_array(&ins),
            ..Default::default()
        };
        accel::submit(f, &mut req).map_err(|e| format!("submit at {at}: {}", errno_name(e)))
    };
    let ql = accel::queue_create(f, uapi::DRM_ONPU_PRIORITY_LOW).map_err(errno_name)?;
    let qh = accel::queue_create(f, uapi::DRM_ONPU_PRIORITY_HIGH).map_err(errno_name)?;
    let mut lows = Vec::new();
    for i in 0..LOWS {
        lows.push(submit(
            ql,
            progs[1 + i].0,
            progs[1 + i].1.len(),
            &[read(&c.src), read(&marks)],
        )?);
    }
    let high = submit(
        qh,
        high_at,
        progs[1 + LOWS].1.len(),
        &[read(&marks), read(&snap)],
    )?;
    // Everything is queued: let them go.
    accel::syncobj_signal(f, gate).map_err(errno_name)?;
    for s in lows.into_iter().chain(std::iter::once(high)) {
        c.wait_ok(s)?;
    }
    accel::syncobj_destroy(f, gate).map_err(errno_name)?;
    let mut m = Mapping::new(f, &snap).map_err(|e| e.to_string())?;
    let before = m.as_mut_slice()[..SLICE as usize * LOWS]
        .chunks(SLICE as usize)
        .filter(|s| s.iter().all(|&b| b == 0x77))
        .count();
    let mut all = Mapping::new(f, &marks).map_err(|e| e.to_string())?;
    if all.as_mut_slice()[..SLICE as usize * LOWS]
        .iter()
        .any(|&b| b != 0x77)
    {
        return Err("not every LOW job wrote its mark".into());
    }
    for q in [ql, qh] {
        accel::queue_destroy(f, q).map_err(errno_name)?;
    }
    for b in [marks, snap, cmd] {
        accel::gem_close(f, b.handle).map_err(errno_name)?;
    }
    println!("# {before} of {LOWS} LOW jobs ran before the HIGH job");
    if before * 2 >= LOWS {
        return Err(format!("{before} of {LOWS} LOW jobs submitted before it ran before the HIGH job, want fewer than half"));
    }
    Ok(())
}

/// A job waiting for a point nobody signals, in a queue that is then
/// destroyed: it ends CANCELED (-ECANCELED) at once, its output fence
/// signals with -ECANCELED, it never ran, and the queue's next job (ready)
/// still runs after it.
fn destroyed_queue_cancels(c: &Ctx) -> Result<(), String> {
    c.fill(&c.src, 0x3c)?;
    c.fill(&c.dst, 0)?;
    let never = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let out = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let q = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(errno_name)?;
    let blocked = c
        .submit(q, &[wait_for_submit(never, 0)], &[accel::sync(out)])
        .map_err(|e| format!("submit: {}", errno_name(e)))?;
    let fence = accel::syncobj_export_sync_file(&c.file, out).map_err(errno_name)?;
    // Submitted after it: waits behind it in the queue, nothing else.
    let next = c
        .submit(q, &[], &[])
        .map_err(|e| format!("second submit: {}", errno_name(e)))?;
    c.not_ended(blocked)?;
    c.dst_is(0)?;
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    let w = accel::wait(&c.file, blocked, 10 * SEC)
        .map_err(|e| format!("wait for the blocked job: {}", errno_name(e)))?;
    if w.status != uapi::DRM_ONPU_JOB_CANCELED || w.error != -libc::ECANCELED {
        return Err(format!(
            "the blocked job ended with status {:#x} error {}, want CANCELED and -ECANCELED",
            w.status, w.error
        ));
    }
    let status = npu_tools::syncfile::wait_status(&fence, 10_000)?;
    if status != -libc::ECANCELED {
        return Err(format!(
            "its output fence has status {status}, want -ECANCELED"
        ));
    }
    c.wait_ok(next)?;
    c.dst_is(0x3c)?;
    accel::syncobj_destroy(&c.file, never).map_err(errno_name)?;
    accel::syncobj_destroy(&c.file, out).map_err(errno_name)
}

/// The same when the file is closed: the job's fence (kept as a
/// sync_file past the close) signals with -ECANCELED.
fn closed_file_cancels() -> Result<(), String> {
    let c = Ctx::open()?;
    let never = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let out = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    c.submit(
        accel::FIRST_QUEUE,
        &[wait_for_submit(never, 0)],
        &[accel::sync(out)],
    )
    .map_err(|e| format!("submit: {}", errno_name(e)))?;
    let fence = accel::syncobj_export_sync_file(&c.file, out).map_err(errno_name)?;
    drop(c);
    let status = npu_tools::syncfile::wait_status(&fence, 10_000)?;
    if status != -libc::ECANCELED {
        return Err(format!(
            "the job's fence has status {status} after the close, want -ECANCELED"
        ));
    }
    Ok(())
}

/// A job waiting in the scheduler keeps the NPU mappings of its objects
/// when their handles are closed: objects created meanwhile get other
/// addresses, and when the job runs it reads and writes its own objects
/// (seen through a CPU mapping kept past the close), not the new ones.
fn closed_handles_stay_mapped(c: &Ctx, queue: u32) -> Result<(), String> {
    let f = &c.file;
    let bo = |size: u64| -> Result<(Bo, u64), String> {
        let b = accel::bo_create(f, size).map_err(errno_name)?;
        let va = accel::bo_npu_addr(f, b.handle).map_err(errno_name)?;
        Ok((b, va))
    };
    let (src, src_va) = bo(u64::from(LEN))?;
    let (dst, dst_va) = bo(u64::from(LEN))?;
    let (cmd, cmd_va) = bo(4096)?;
    let code = assemble(&copyjob::insns(src_va, dst_va, LEN));
    Mapping::new(f, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    c.fill(&src, 0xc5)?;
    // Kept past the close: the mapping holds the object.
    let mut dst_map = Mapping::new(f, &dst).map_err(|e| e.to_string())?;
    dst_map.as_mut_slice().fill(0);
    let gate = accel::syncobj_create(f, false).map_err(errno_name)?;
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
    let ins = [wait_for_submit(gate, 0)];
    let mut req = uapi::drm_onpu_submit {
        queue_id: queue,
        cmdbuf_handle: cmd.handle,
        cmdbuf_size: code.len() as u32,
        bos: accel::obj_array(&refs),
        in_syncs: accel::obj_array(&ins),
        ..Default::default()
    };
    let seqno = accel::submit(f, &mut req).map_err(|e| format!("submit: {}", errno_name(e)))?;
    for b in [&src, &dst, &cmd] {
        accel::gem_close(f, b.handle).map_err(errno_name)?;
    }
    // New objects while the job still waits: none may take an address
    // range the job uses.
    let old = [
        (src_va, u64::from(LEN)),
        (dst_va, u64::from(LEN)),
        (cmd_va, 4096),
    ];
    let mut fresh = Vec::new();
    for _ in 0..6 {
        let (b, va) = bo(4096)?;
        if let Some((o, _)) = old.iter().find(|(o, len)| va < o + len && *o < va + 4096) {
            return Err(format!(
                "a new object got NPU address {va:#x}, inside the range at {o:#x} of the waiting job's closed objects"
            ));
        }
        c.fill(&b, 0xee)?;
        fresh.push(b);
    }
    accel::syncobj_signal(f, gate).map_err(errno_name)?;
    c.wait_ok(seqno)?;
    if let Some(i) = dst_map.as_mut_slice()[..LEN as usize]
        .iter()
        .position(|&b| b != 0xc5)
    {
        return Err(format!(
            "the job's dst byte {i} is {:#x}, want 0xc5 (its copy)",
            dst_map.as_mut_slice()[i]
        ));
    }
    for b in &fresh {
        let mut m = Mapping::new(f, b).map_err(|e| e.to_string())?;
        if m.as_mut_slice().iter().any(|&x| x != 0xee) {
            return Err(
                "the waiting job wrote into an object created after its objects' handles closed"
                    .into(),
            );
        }
        accel::gem_close(f, b.handle).map_err(errno_name)?;
    }
    accel::syncobj_destroy(f, gate).map_err(errno_name)
}

/// closed_handles_stay_mapped on a queue of a context made by
/// CONTEXT_CREATE (which maps the objects in its own page tables).
fn created_context_stays_mapped(c: &Ctx) -> Result<(), String> {
    let ctx = accel::context_create(&c.file).map_err(errno_name)?;
    let q = queue_create_raw(&c.file, ctx, uapi::DRM_ONPU_PRIORITY_NORMAL, 0)
        .map_err(|e| format!("queue in context {ctx}: {}", errno_name(e)))?;
    let r = closed_handles_stay_mapped(c, q);
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    accel::context_destroy(&c.file, ctx).map_err(errno_name)?;
    r
}

/// A job with nothing to wait for, of a queue with nothing pending, goes
/// straight into the ring from SUBMIT (debugfs `jobs_fast_path` counts it);
/// a job waiting for a point, and the job queued behind it, go through the
/// scheduler. (No other process uses the device meanwhile.)
fn fast_path(c: &Ctx) -> Result<(), String> {
    let counters = || -> Result<(u64, u64), String> {
        Ok((
            npu_tools::debugfs::counter("jobs_submitted")?,
            npu_tools::debugfs::counter("jobs_fast_path")?,
        ))
    };
    let submit = |q, ins: &[uapi::drm_onpu_sync]| {
        c.submit(q, ins, &[])
            .map_err(|e| format!("submit: {}", errno_name(e)))
    };
    let q = accel::queue_create(&c.file, uapi::DRM_ONPU_PRIORITY_NORMAL).map_err(errno_name)?;
    let (submitted, fast) = counters()?;
    for _ in 0..8 {
        c.wait_ok(submit(q, &[])?)?;
    }
    let t = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let waiting = submit(q, &[wait_for_submit(t, 1)])?;
    let behind = submit(q, &[])?;
    let before = c.not_ended(behind);
    accel::syncobj_timeline_signal(&c.file, t, 1).map_err(errno_name)?;
    before?;
    c.wait_ok(waiting)?;
    c.wait_ok(behind)?;
    let (submitted2, fast2) = counters()?;
    accel::queue_destroy(&c.file, q).map_err(errno_name)?;
    accel::syncobj_destroy(&c.file, t).map_err(errno_name)?;
    // 8 + 2 jobs entered the ring, the first 8 by the fast path.
    match (submitted2 - submitted, fast2 - fast) {
        (10, 8) => Ok(()),
        (s, f) => Err(format!(
            "{s} jobs entered the ring, {f} by the fast path; want 10 and 8"
        )),
    }
}

fn main() {
    let args = Args::parse("", &[]);
    args.at_most(0);
    let c = match Ctx::open() {
        Ok(c) => c,
        Err(e) => {
            println!("# cannot open the device: {e}");
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let mut tap = Tap::new(12);
    tap.check(
        "SUBMIT returns before another process signals the job's input; the job runs after",
        cross_process_signal(&c),
    );
    tap.check(
        "a job waits (WAIT_FOR_SUBMIT) for a timeline point another process signals later",
        timeline_wait_before_signal(&c),
    );
    tap.check(
        "a job signals timeline points of two syncobjs and a binary syncobj; points only go forward",
        out_points(&c),
    );
    tap.check(
        "WAIT's absolute deadline holds across SIGALRM (SA_RESTART)",
        deadline_across_signal(&c),
    );
    tap.check(
        "a queue holds 64 jobs not yet ended; one more is EAGAIN",
        queue_limit(&c),
    );
    tap.check(
        "QUEUE_CREATE/DESTROY errnos; REALTIME needs CAP_SYS_NICE",
        queue_errors(&c),
    );
    tap.check(
        "a HIGH job submitted after 30 LOW jobs runs before most of them",
        priorities(&c),
    );
    tap.check(
        "QUEUE_DESTROY cancels a job waiting for a point with no fence (CANCELED, -ECANCELED); the next job runs",
        destroyed_queue_cancels(&c),
    );
    tap.check(
        "closing the file cancels a job waiting for a point with no fence (its fence: -ECANCELED)",
        closed_file_cancels(),
    );
    tap.check(
        "a waiting job keeps its objects mapped after their handles close; new objects get other addresses",
        closed_handles_stay_mapped(&c, accel::FIRST_QUEUE),
    );
    tap.check(
        "the same for a job of a created context",
        created_context_stays_mapped(&c),
    );
    tap.check(
        "dependency-free jobs enter the ring from SUBMIT (jobs_fast_path); a waiting job and the one behind it through the scheduler",
        fast_path(&c),
    );
    std::process::exit(tap.finish());
}
