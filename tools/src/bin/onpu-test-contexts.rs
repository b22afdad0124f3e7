//! kselftest for onpu contexts and the hardware-context slot manager:
//! more open files than the device has hardware contexts, all running jobs
//! with the right results (copies and fills checked byte by byte against
//! values computed here), CONTEXT_CREATE/DESTROY and their errnos, per-job
//! profiles against values derived by hand from the device's cost model,
//! queues of created contexts (their own address spaces).
//! TAP output; run in the guest with the driver loaded. The slot-wait test
//! needs the device started with `--inject hang:tag=57005`
//! (tools/selftests/runs.list does it).
//!
//!   onpu-test-contexts [FILES]    (default: 40, and at least 2.5 times
//!                                  DRM_ONPU_PARAM_NUM_CONTEXTS)

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Insn, Strided};
use npu_tools::args::Args;
use npu_tools::copyjob::{self, CopyJob};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;

const SEC: i64 = 1_000_000_000;
/// Bytes each job moves.
const LEN: u32 = 4096;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

fn expect_errno<T>(what: &str, r: Result<T, i32>, want: i32) -> Result<(), String> {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!(
            "{what}: got {}, want {}",
            errno_name(e),
            errno_name(want)
        )),
        Ok(_) => Err(format!("{what}: succeeded, want {}", errno_name(want))),
    }
}

fn open() -> Result<File, String> {
    let path = accel::find_device().map_err(|e| e.to_string())?;
    accel::open_with_queue(&path).map_err(|e| e.to_string())
}

/// One open file with a copy job and a fill job.
struct Client {
    file: File,
    copy: CopyJob,
    fill_dst: Bo,
    fill_cmd: Bo,
    fill_size: u32,
    seed: u32,
}

/// The 32-bit value client `seed`'s fill job writes.
fn fill_word(seed: u32) -> u32 {
    0xc0de_0000 | seed
}

impl Client {
    fn new(seed: u32) -> Result<Client, String> {
        let file = open()?;
        let copy = CopyJob::new(&file, LEN)?;
        copy.fill_src(&file, &copyjob::pattern(seed, LEN as usize))?;
        let fill_dst = accel::bo_create(&file, u64::from(LEN)).map_err(errno_name)?;
        let fill_cmd = accel::bo_create(&file, 4096).map_err(errno_name)?;
        let dst_va = accel::bo_npu_addr(&file, fill_dst.handle).map_err(errno_name)?;
        // FILL SRAM with the word, then store it to the object.
        let c = Strided::contiguous(LEN);
        let code = assemble(&[
            Insn::Fill {
                dst: 0,
                len: LEN,
                pattern: fill_word(seed),
            },
            Insn::DmaStore {
                va: dst_va,
                sram: 0,
                mem: c,
                sram_layout: c,
            },
            Insn::End,
        ]);
        let mut m = Mapping::new(&file, &fill_cmd).map_err(|e| e.to_string())?;
        m.as_mut_slice()[..code.len()].copy_from_slice(&code);
        Ok(Client {
            file,
            copy,
            fill_dst,
            fill_cmd,
            fill_size: code.len() as u32,
            seed,
        })
    }

    /// Clear both destinations and queue both jobs; their seqnos.
    fn submit(&self) -> Result<(u64, u64), String> {
        self.copy.clear_dst(&self.file)?;
        Mapping::new(&self.file, &self.fill_dst)
            .map_err(|e| e.to_string())?
            .as_mut_slice()
            .fill(0);
        let a = self.copy.submit(&self.file, 0)?;
        let refs = [uapi::drm_onpu_bo_ref {
            handle: self.fill_dst.handle,
            flags: uapi::DRM_ONPU_BO_WRITE,
        }];
        let b = accel::submit_simple(
            &self.file,
            accel::FIRST_QUEUE,
            &self.fill_cmd,
            self.fill_size,
            &refs,
            0,
        )
        .map_err(|e| format!("submit: {}", errno_name(e)))?;
        Ok((a, b))
    }

    /// Wait for both jobs and check what they wrote.
    fn check(&self, (a, b): (u64, u64)) -> Result<(), String> {
        CopyJob::wait_ok(&self.file, a)?;
        CopyJob::wait_ok(&self.file, b)?;
        self.copy
            .check_dst(&self.file, &copyjob::pattern(self.seed, LEN as usize))?;
        let mut m = Mapping::new(&self.file, &self.fill_dst).map_err(|e| e.to_string())?;
        let want = fill_word(self.seed).to_le_bytes();
        for (i, chunk) in m.as_mut_slice()[..LEN as usize].chunks_exact(4).enumerate() {
            if chunk != want {
                return Err(format!(
                    "file {}: fill word {i} is {chunk:02x?}, want {want:02x?}",
                    self.seed
                ));
            }
        }
        Ok(())
    }
}

/// `files` open files (more than the device's hardware contexts) each
/// queue a copy and a fill before any is waited for, so contexts contend
/// for slots (a submitter waits for one to turn idle); then again in the
/// opposite order, so evicted contexts get a slot back.
fn many_files(files: usize, hw_contexts: u64) -> Result<(), String> {
    if files as u64 <= hw_contexts {
        return Err(format!(
            "{files} files do not exceed the device's {hw_contexts} contexts"
        ));
    }
    let clients = (0..files as u32)
        .map(|i| Client::new(i + 1).map_err(|e| format!("file {}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let seqnos = clients
        .iter()
        .map(|c| c.submit())
        .collect::<Result<Vec<_>, _>>()?;
    for (c, s) in clients.iter().zip(seqnos) {
        c.check(s)?;
    }
    let seqnos = clients
        .iter()
        .rev()
        .map(|c| c.submit())
        .collect::<Result<Vec<_>, _>>()?;
    for (c, s) in clients.iter().rev().zip(seqnos) {
        c.check(s)?;
    }
    Ok(())
}

/// CONTEXT_CREATE hands out ids from 1, up to DRM_ONPU_MAX_CONTEXTS per
/// file; CONTEXT_DESTROY takes them back; bad fields give their errnos.
fn context_ioctls() -> Result<(), String> {
    let f = open()?;
    let max = uapi::DRM_ONPU_MAX_CONTEXTS;
    for want in 1..=max {
        let id =
            accel::context_create(&f).map_err(|e| format!("create {want}: {}", errno_name(e)))?;
        if id != want {
            return Err(format!("create {want}: id {id}, want {want}"));
        }
    }
    expect_errno(
        "create past the limit",
        accel::context_create(&f),
        libc::ENOSPC,
    )?;
    // Another file has its own ids.
    let g = open()?;
    let id = accel::context_create(&g)
        .map_err(|e| format!("create in a second file: {}", errno_name(e)))?;
    if id != 1 {
        return Err(format!("the second file's first context is {id}, want 1"));
    }
    expect_errno("destroy 0", accel::context_destroy(&f, 0), libc::ENOENT)?;
    expect_errno(
        "destroy past the limit",
        accel::context_destroy(&f, max + 1),
        libc::ENOENT,
    )?;
    let mut bad_pad = uapi::drm_onpu_context_destroy {
        context_id: 3,
        pad: 1,
    };
    expect_errno(
        "destroy with pad",
        accel::context_destroy_raw(&f, &mut bad_pad),
        libc::EINVAL,
    )?;
    let mut bad_flags = uapi::drm_onpu_context_create {
        flags: 1,
        context_id: 0,
    };
    expect_errno(
        "create with flags",
        accel::ioctl(&f, &mut bad_flags),
        libc::EINVAL,
    )?;
    accel::context_destroy(&f, 7).map_err(|e| format!("destroy 7: {}", errno_name(e)))?;
    expect_errno(
        "destroy 7 again",
        accel::context_destroy(&f, 7),
        libc::ENOENT,
    )?;
    let id = accel::context_create(&f)
        .map_err(|e| format!("create after destroy: {}", errno_name(e)))?;
    if id != 7 {
        return Err(format!(
            "create after destroying 7 gave {id}, want 7 (the lowest free id)"
        ));
    }
    for id in 1..=max {
        accel::context_destroy(&f, id).map_err(|e| format!("destroy {id}: {}", errno_name(e)))?;
    }
    // The file and its default context still run jobs.
    let job = CopyJob::new(&f, LEN)?;
    job.run(&f, &copyjob::pattern(99, LEN as usize))?;
    Ok(())
}

/// Buffer objects closed while contexts exist (the file unmaps them in
/// every context) and contexts left for close to clean up.
fn close_with_contexts() -> Result<(), String> {
    let f = open()?;
    for _ in 0..3 {
        accel::context_create(&f).map_err(errno_name)?;
    }
    let job = CopyJob::new(&f, LEN)?;
    let seqno = job.submit(&f, 0)?;
    accel::gem_close(&f, job.src.handle).map_err(errno_name)?;
    accel::wait(&f, seqno, 30 * SEC).map_err(errno_name)?;
    drop(f);
    // The device still serves new files.
    let g = open()?;
    CopyJob::new(&g, LEN)?.run(&g, &copyjob::pattern(5, LEN as usize))?;
    Ok(())
}

/// WAIT with a profile buffer of `size` bytes at `profile`.
fn wait_profile(f: &File, seqno: u64, profile: u64, size: u32) -> Result<uapi::drm_onpu_wait, i32> {
    let mut w = uapi::drm_onpu_wait {
        seqno,
        timeout_abs_ns: accel::deadline_in(30 * SEC)?,
        profile_size: size,
        profile,
        ..Default::default()
    };
    accel::ioctl(f, &mut w)?;
    Ok(w)
}

/// SUBMIT `cmd` (`size` bytes) with DRM_ONPU_SUBMIT_PROFILE and `refs`.
fn submit_profiled(
    f: &File,
    cmd: &Bo,
    size: u32,
    refs: &[uapi::drm_onpu_bo_ref],
) -> Result<u64, String> {
    let mut req = uapi::drm_onpu_submit {
        queue_id: accel::FIRST_QUEUE,
        cmdbuf_handle: cmd.handle,
        cmdbuf_size: size,
        flags: uapi::DRM_ONPU_SUBMIT_PROFILE,
        bos: accel::obj_array(refs),
        ..Default::default()
    };
    accel::submit(f, &mut req).map_err(|e| format!("submit with PROFILE: {}", errno_name(e)))
}

fn profile_words(p: &uapi::drm_onpu_job_profile) -> [u64; 8] {
    [
        p.cycles,
        p.instructions,
        p.macs,
        p.dma_bytes_read,
        p.dma_bytes_written,
        p.dma_engine_cycles,
        p.compute_engine_cycles,
        p.reserved,
    ]
}

fn expect_profile(
    what: &str,
    got: &uapi::drm_onpu_job_profile,
    want: [u64; 8],
) -> Result<(), String> {
    if profile_words(got) == want {
        return Ok(());
    }
    Err(format!(
        "{what}: profile [cycles, insns, macs, read, written, dma, compute, reserved] = {:?}, want {want:?}",
        profile_words(got)
    ))
}

/// Per-job profiles, checked against values derived by hand from the
/// spec's cost model (npu-hw.rst, "Cost model", parameters at their
/// documented values, and "Job profile records"):
///
/// * FILL 4096 bytes of SRAM, DMA_STORE them to a page-aligned object, END.
///   FILL: INSN_OVERHEAD 2 + DMA_LATENCY 64 + max(4096 / 64, 0 rows) = 130,
///   no page walk. DMA_STORE: 2 + 64 + max(64, 1 row) = 130, plus one walk
///   (WALK_CYCLES 3) for the one page it writes = 133. One engine, so
///   cycles = dma_engine_cycles = 263; 3 instructions; reads: the three
///   64-byte fetches = 192; writes 4096; no MACs, no compute.
/// * The copy (DMA_LOAD 4096 from one object, DMA_STORE to another, END):
///   133 + 133 = 266 cycles; reads 192 + 4096 = 4288; writes 4096.
fn profiles() -> Result<(), String> {
    let c = Client::new(77)?;
    let f = &c.file;
    let fill_refs = [uapi::drm_onpu_bo_ref {
        handle: c.fill_dst.handle,
        flags: uapi::DRM_ONPU_BO_WRITE,
    }];

    let seqno = submit_profiled(f, &c.fill_cmd, c.fill_size, &fill_refs)?;
    let mut p = uapi::drm_onpu_job_profile::default();
    let size = std::mem::size_of_val(&p) as u32;
    // A bad pointer: EFAULT, and the job can still be waited for.
    expect_errno(
        "wait with a bad profile pointer",
        wait_profile(f, seqno, 8, size),
        libc::EFAULT,
    )?;
    let w = wait_profile(f, seqno, &mut p as *mut _ as u64, size)
        .map_err(|e| format!("wait with profile: {}", errno_name(e)))?;
    copyjob::ok_outcome(&w)?;
    expect_profile("fill + store", &p, [263, 3, 0, 192, 4096, 263, 0, 0])?;
    if w.cycles != 263 {
        return Err(format!("fill + store: WAIT cycles {}, want 263", w.cycles));
    }

    let code = assemble(&copyjob::insns(c.copy.src_va, c.copy.dst_va, LEN));
    let seqno = submit_profiled(f, &c.copy.cmd, code.len() as u32, &c.copy.refs())?;
    let mut p = uapi::drm_onpu_job_profile::default();
    let w = wait_profile(f, seqno, &mut p as *mut _ as u64, size).map_err(errno_name)?;
    copyjob::ok_outcome(&w)?;
    expect_profile("copy", &p, [266, 3, 0, 4288, 4096, 266, 0, 0])?;

    // A short buffer gets only its bytes.
    let seqno = submit_profiled(f, &c.fill_cmd, c.fill_size, &fill_refs)?;
    let mut short = [u64::MAX; 2];
    wait_profile(f, seqno, short.as_mut_ptr() as u64, 8).map_err(errno_name)?;
    if short != [263, u64::MAX] {
        return Err(format!(
            "an 8-byte profile buffer holds {short:?}, want [263, u64::MAX]"
        ));
    }

    // A job without PROFILE has no profile to give.
    let seqno = accel::submit_simple(
        f,
        accel::FIRST_QUEUE,
        &c.fill_cmd,
        c.fill_size,
        &fill_refs,
        0,
    )
    .map_err(errno_name)?;
    let mut p = uapi::drm_onpu_job_profile::default();
    expect_errno(
        "profile of a job without PROFILE",
        wait_profile(f, seqno, &mut p as *mut _ as u64, size),
        libc::EINVAL,
    )?;
    accel::wait(f, seqno, 30 * SEC).map_err(errno_name)?;
    // Unknown submit flags are still refused.
    let mut req = uapi::drm_onpu_submit {
        queue_id: accel::FIRST_QUEUE,
        cmdbuf_handle: c.fill_cmd.handle,
        cmdbuf_size: c.fill_size,
        flags: 2,
        ..Default::default()
    };
    expect_errno(
        "submit flag 1 << 1",
        accel::submit(f, &mut req),
        libc::EINVAL,
    )?;
    Ok(())
}

const HANG_TAG: u32 = 0xdead;

/// Every hardware context busy: the first file's job hangs the device
/// (fault injection, `--inject hang:tag=57005`) and the other files' jobs
/// queue behind it, one per slot. A job of one more file must wait (in the
/// scheduler: SUBMIT returns at once) for a slot: none can turn idle before
/// the hung job ends (jobs end in ring order); a slot taken from a context
/// with jobs in the ring would run those jobs in the wrong address space.
/// The hung job ends TIMEDOUT, and every copy then holds its data.
fn slot_wait(hw_contexts: u64) -> Result<(), String> {
    let first = open()?;
    if !accel::fault_injection(&first)? {
        return Err(
            "the device has no fault injection (start it with --inject hang:tag=57005)".into(),
        );
    }
    let cmd = accel::bo_create(&first, 4096).map_err(errno_name)?;
    let code = assemble(&[Insn::Mark { tag: HANG_TAG }, Insn::End]);
    Mapping::new(&first, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let hung = accel::submit_simple(
        &first,
        accel::FIRST_QUEUE,
        &cmd,
        code.len() as u32,
        &[],
        300,
    )
    .map_err(errno_name)?;
    // One file per remaining slot (slot 0 is the kernel's), each with a
    // copy in the ring.
    let mut others = Vec::new();
    for seed in 2..hw_contexts as u32 {
        let f = open()?;
        let job = CopyJob::new(&f, LEN)?;
        let want = copyjob::pattern(seed + 100, LEN as usize);
        job.fill_src(&f, &want)?;
        let seqno = job.submit(&f, 0)?;
        others.push((f, job, want, seqno));
    }
    let last = open()?;
    let job = CopyJob::new(&last, LEN)?;
    let want = copyjob::pattern(1000, LEN as usize);
    job.fill_src(&last, &want)?;
    let seqno = job.submit(&last, 0)?;
    match accel::wait(&first, hung, 30 * SEC) {
        Ok(w) if w.status == uapi::DRM_ONPU_JOB_TIMEDOUT => {}
        Ok(w) => {
            return Err(format!(
                "the hanging job ended with status {:#x}, want TIMEDOUT",
                w.status
            ))
        }
        Err(e) => return Err(format!("wait for the hung job: {}", errno_name(e))),
    }
    CopyJob::wait_ok(&last, seqno)?;
    job.check_dst(&last, &want)?;
    for (f, job, want, seqno) in &others {
        CopyJob::wait_ok(f, *seqno)?;
        job.check_dst(f, want)?;
    }
    Ok(())
}

/// SUBMIT `code` (written into a fresh command buffer) on `queue`, listing
/// `refs`; the seqno.
fn submit_code(
    f: &File,
    queue: u32,
    code: &[u8],
    refs: &[uapi::drm_onpu_bo_ref],
) -> Result<u64, String> {
    let cmd = accel::bo_create(f, 4096).map_err(errno_name)?;
    Mapping::new(f, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(code);
    let mut req = uapi::drm_onpu_submit {
        queue_id: queue,
        cmdbuf_handle: cmd.handle,
        cmdbuf_size: code.len() as u32,
        bos: accel::obj_array(refs),
        ..Default::default()
    };
    accel::submit(f, &mut req).map_err(|e| format!("submit: {}", errno_name(e)))
}

/// A queue of a created context runs its jobs in that address space: a
/// copy listing its objects is right (they are mapped there on first use,
/// at the file's addresses); the same reading instructions without listing
/// the source fault MMU_UNMAPPED (1) at the source's address there, while in
/// the default context, where another job used the source, they run.
/// CONTEXT_DESTROY is EBUSY while the queue exists and works after
/// QUEUE_DESTROY; QUEUE_CREATE on a context the file does not have is
/// ENOENT.
fn queues_in_contexts() -> Result<(), String> {
    const MMU_UNMAPPED: u32 = 1;
    let f = open()?;
    let ctx = accel::context_create(&f).map_err(errno_name)?;
    let mut qc = uapi::drm_onpu_queue_create {
        context_id: ctx,
        priority: uapi::DRM_ONPU_PRIORITY_NORMAL,
        ..Default::default()
    };
    accel::ioctl(&f, &mut qc).map_err(|e| format!("queue create: {}", errno_name(e)))?;
    let q = qc.queue_id;
    let job = CopyJob::new(&f, LEN)?;
    let want = copyjob::pattern(0x77, LEN as usize);
    job.fill_src(&f, &want)?;
    job.clear_dst(&f)?;
    let mut req = uapi::drm_onpu_submit {
        queue_id: q,
        ..Default::default()
    };
    let s = job.submit_with(&f, &mut req)?;
    CopyJob::wait_ok(&f, s)?;
    job.check_dst(&f, &want)?;

    // A source only a default-context job used.
    let other = CopyJob::new(&f, LEN)?;
    other.fill_src(&f, &copyjob::pattern(0x78, LEN as usize))?;
    let s = other.submit(&f, 0)?;
    CopyJob::wait_ok(&f, s)?;
    let src_va = other.src_va;
    let dst = accel::bo_create(&f, u64::from(LEN)).map_err(errno_name)?;
    let dst_va = accel::bo_npu_addr(&f, dst.handle).map_err(errno_name)?;
    let code = assemble(&copyjob::insns(src_va, dst_va, LEN));
    let refs = [uapi::drm_onpu_bo_ref {
        handle: dst.handle,
        flags: uapi::DRM_ONPU_BO_WRITE,
    }];
    let s = submit_code(&f, q, &code, &refs)?;
    let w = accel::wait(&f, s, 30 * SEC).map_err(errno_name)?;
    if (w.status, w.error, w.fault_addr) != (MMU_UNMAPPED, -libc::EIO, src_va) {
        return Err(format!(
            "a read of an object the created context never mapped ended {:#x}/{} at {:#x}, want MMU_UNMAPPED/-EIO at {src_va:#x}",
            w.status, w.error, w.fault_addr
        ));
    }
    let s = submit_code(&f, accel::FIRST_QUEUE, &code, &refs)?;
    let w = accel::wait(&f, s, 30 * SEC).map_err(errno_name)?;
    copyjob::ok_outcome(&w).map_err(|e| format!("the same job in the default context: {e}"))?;

    expect_errno(
        "CONTEXT_DESTROY with a queue",
        accel::context_destroy(&f, ctx),
        libc::EBUSY,
    )?;
    accel::queue_destroy(&f, q).map_err(errno_name)?;
    accel::context_destroy(&f, ctx)
        .map_err(|e| format!("destroy after the queue: {}", errno_name(e)))?;
    let mut qc = uapi::drm_onpu_queue_create {
        context_id: ctx,
        priority: uapi::DRM_ONPU_PRIORITY_NORMAL,
        ..Default::default()
    };
    expect_errno(
        "QUEUE_CREATE on a destroyed context",
        accel::ioctl(&f, &mut qc),
        libc::ENOENT,
    )?;
    Ok(())
}

fn main() {
    let args = Args::parse("[FILES]", &[]);
    args.at_most(1);
    let f = match open() {
        Ok(f) => f,
        Err(e) => {
            println!("# cannot open the device: {e}");
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let hw_contexts = match accel::get_param(&f, uapi::DRM_ONPU_PARAM_NUM_CONTEXTS) {
        Ok(n) => n,
        Err(e) => args.fail(&format!("GET_PARAM NUM_CONTEXTS: {}", errno_name(e))),
    };
    drop(f);
    let default = (hw_contexts * 5 / 2).max(40);
    let files = args.number(0, "FILES", default) as usize;
    let mut tap = Tap::new(6);
    tap.check(
        &format!("{files} open files on {hw_contexts} hardware contexts all run copies and fills"),
        many_files(files, hw_contexts),
    );
    tap.check(
        "with every hardware context busy, a submission waits for one to turn idle",
        slot_wait(hw_contexts),
    );
    tap.check(
        "context create/destroy: ids, the limit, errnos",
        context_ioctls(),
    );
    tap.check(
        "objects closed and files closed with contexts",
        close_with_contexts(),
    );
    tap.check(
        "job profiles match the cost model; WAIT's profile errnos",
        profiles(),
    );
    tap.check(
        "queues of a created context: its own address space; CONTEXT_DESTROY EBUSY while used",
        queues_in_contexts(),
    );
    std::process::exit(tap.finish());
}
