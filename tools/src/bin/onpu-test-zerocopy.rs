//! kselftest for libnpu's zero-copy request buffers and dma-bufs through
//! /dev/accel (Documentation/userspace/c-api.rst, "Zero-copy buffers and
//! dma-bufs"): memory the caller binds is read and written by the NPU in
//! place (a child process makes it unreadable to the CPU during a run to
//! prove that nothing copies it), memory that cannot be used in place is
//! copied, request A's output exported as a dma-buf is request B's input
//! (run after run, and through A's sync_file), the dma-buf maps for the CPU
//! and a forked child imports it in its own device file; bad sizes and
//! descriptors are clear errors. Results are checked against matrix
//! products computed here by loops over small integers (exact in f32).
//! TAP output; run in the guest with the driver loaded.

use memmap2::MmapMut;
use nix::sys::mman::{mprotect, ProtFlags};
use npu::api::{CompiledModel, InferRequest, Npu, Status};
use npu_tools::child;
use npu_tools::tap::Tap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// Model A: y = a @ b, a: [M, K], b: [K, N].
const M: usize = 16;
const K: usize = 32;
const N: usize = 24;
/// Model B: z = x @ w, x: [M, N] (A's output), w: [N, P].
const P: usize = 8;

const MODEL_A: &str = "input a: f32[16,32]\ninput b: f32[32,24]\ny = gemm(a, b)\noutput y\n";
const MODEL_B: &str = "input x: f32[16,24]\ninput w: f32[24,8]\nz = gemm(x, w)\noutput z\n";
/// An input of 16 x 512 floats: 8 pages, not A's output's one.
const MODEL_WIDE: &str = "input x: f32[16,512]\ny = relu(x)\noutput y\n";

/// Small integers in [-3, 3] from a seed: products and sums of them stay
/// exact in f32.
fn ints(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 3 + i / 5) % 7) as f32 - 3.0)
        .collect()
}

/// a @ b for row-major a: [m, k], b: [k, n], by loops.
fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for t in 0..k {
                acc += f64::from(a[i * k + t]) * f64::from(b[t * n + j]);
            }
            out[i * n + j] = acc as f32;
        }
    }
    out
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn compare(what: &str, got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    match got.iter().zip(want).position(|(g, w)| g != w) {
        None => Ok(()),
        Some(i) => Err(format!("{what}[{i}] = {}, want {}", got[i], want[i])),
    }
}

/// Page-aligned anonymous memory of `len` bytes (whole pages), filled with
/// a NaN pattern so that a run relying on zeroed outputs shows.
fn pages(len: usize) -> Result<MmapMut, String> {
    let page = npu::device::page_size();
    let mut m = MmapMut::map_anon(len.div_ceil(page) * page).map_err(|e| format!("mmap: {e}"))?;
    for c in m.chunks_exact_mut(4) {
        c.copy_from_slice(&0x7fc0_dead_u32.to_le_bytes());
    }
    Ok(m)
}

fn put(m: &mut MmapMut, at: usize, v: &[f32]) {
    m[at..at + v.len() * 4].copy_from_slice(&to_bytes(v));
}

fn get(m: &MmapMut, at: usize, n: usize) -> Vec<f32> {
    floats(&m[at..at + n * 4])
}

fn e2s(e: npu::api::Error) -> String {
    format!("{} ({})", e.message, e.status.name())
}

struct Models {
    a: CompiledModel,
    b: CompiledModel,
}

fn load(npu: &Npu) -> Result<Models, String> {
    Ok(Models {
        a: npu.load_text(MODEL_A).map_err(e2s)?,
        b: npu.load_text(MODEL_B).map_err(e2s)?,
    })
}

/// Bind `len` bytes at offset `at` of `m` as input `name`.
fn bind_in(r: &InferRequest, name: &str, m: &MmapMut, at: usize, len: usize) -> Result<(), String> {
    // SAFETY: the mapping outlives the request (every caller drops the
    // request first) and is only written between runs.
    unsafe { r.bind_input(name, m.as_ptr().add(at), len) }.map_err(e2s)
}

fn bind_out(r: &InferRequest, name: &str, m: &mut MmapMut, len: usize) -> Result<(), String> {
    // SAFETY: as for bind_in; only read between runs.
    unsafe { r.bind_output(name, m.as_mut_ptr(), len) }.map_err(e2s)
}

fn expect_zero_copy(r: &InferRequest, names: &[&str], want: bool) -> Result<(), String> {
    for name in names {
        let z = r.is_zero_copy(name).map_err(e2s)?;
        if z != want {
            let why = r.copy_reason(name).map_err(e2s)?;
            return Err(format!(
                "`{name}`: zero-copy {z}, want {want} (copy reason: {why:?})"
            ));
        }
    }
    Ok(())
}

/// Bound a, b and y are used in place: the NPU writes y straight into the
/// caller's memory (which starts as NaNs), and nothing is copied either way.
/// Then the bound input changes between runs (no set_input): the next run
/// reads the new bytes in place.
fn bound_in_place(npu: &Npu, m: &Models) -> Result<(), String> {
    let (mut a, mut b, mut y) = (pages(M * K * 4)?, pages(K * N * 4)?, pages(M * N * 4)?);
    let (a1, bv) = (ints(M * K, 1), ints(K * N, 2));
    put(&mut a, 0, &a1);
    put(&mut b, 0, &bv);
    let r = m.a.request();
    bind_in(&r, "a", &a, 0, M * K * 4)?;
    bind_in(&r, "b", &b, 0, K * N * 4)?;
    bind_out(&r, "y", &mut y, M * N * 4)?;
    let s = r.run().map_err(e2s)?;
    compare(
        "y after the first run",
        &get(&y, 0, M * N),
        &matmul(&a1, &bv, M, K, N),
    )?;
    expect_zero_copy(&r, &["a", "b", "y"], true)?;
    if (s.uploaded, s.downloaded) != (0, 0) {
        return Err(format!(
            "first run: {} bytes uploaded, {} downloaded; want none",
            s.uploaded, s.downloaded
        ));
    }
    for seed in [3, 4] {
        let an = ints(M * K, seed);
        put(&mut a, 0, &an);
        let s = r.run().map_err(e2s)?;
        compare(
            &format!("y after changing a in place (seed {seed})"),
            &get(&y, 0, M * N),
            &matmul(&an, &bv, M, K, N),
        )?;
        if (s.uploaded, s.downloaded) != (0, 0) {
            return Err(format!(
                "run {seed}: {} bytes uploaded, {} downloaded; want none",
                s.uploaded, s.downloaded
            ));
        }
    }
    let _ = npu;
    Ok(())
}

/// In a child process of its own (it changes page protections): after a
/// first run has pinned the bound buffers, the input is made inaccessible
/// and the output read-only to the CPU. A run that copied either would die
/// of SIGSEGV; in place the NPU reads and writes the pinned pages, and the
/// results are right.
fn cpu_never_touches_bound_memory() -> Result<(), String> {
    let proc = child::spawn(|| match in_child_protected() {
        Ok(()) => 0,
        Err(e) => {
            println!("# child: {e}");
            1
        }
    })?;
    match proc.wait()? {
        child::Exit::Code(0) => Ok(()),
        child::Exit::Signal(s) => Err(format!(
            "the child died of {s}: libnpu touched protected bound memory from the CPU"
        )),
        e => Err(format!("the child failed: {e}")),
    }
}

fn protect(m: &MmapMut, prot: ProtFlags) -> Result<(), String> {
    let ptr = NonNull::new(m.as_ptr() as *mut std::ffi::c_void).ok_or("a NULL mapping")?;
    // SAFETY: the whole mapping, which nothing in this process reads or
    // writes while it is protected.
    unsafe { mprotect(ptr, m.len(), prot) }.map_err(|e| format!("mprotect: {e}"))
}

fn in_child_protected() -> Result<(), String> {
    let npu = Npu::open().map_err(e2s)?;
    let m = load(&npu)?;
    let (mut a, mut b, mut y) = (pages(M * K * 4)?, pages(K * N * 4)?, pages(M * N * 4)?);
    let bv = ints(K * N, 6);
    put(&mut a, 0, &ints(M * K, 5));
    put(&mut b, 0, &bv);
    let r = m.a.request();
    bind_in(&r, "a", &a, 0, M * K * 4)?;
    bind_in(&r, "b", &b, 0, K * N * 4)?;
    bind_out(&r, "y", &mut y, M * N * 4)?;
    r.run().map_err(e2s)?;
    let a2 = ints(M * K, 7);
    put(&mut a, 0, &a2);
    // A NaN pattern again, so the second run must write every value.
    put(&mut y, 0, &vec![f32::NAN; M * N]);
    protect(&a, ProtFlags::PROT_NONE)?;
    protect(&y, ProtFlags::PROT_READ)?;
    r.run().map_err(e2s)?;
    compare(
        "y written by the NPU into read-only memory",
        &get(&y, 0, M * N),
        &matmul(&a2, &bv, M, K, N),
    )?;
    // Checked after the protected run, which is the proof that holds
    // whatever libnpu reports about itself.
    expect_zero_copy(&r, &["a", "b", "y"], true)?;
    drop(r);
    protect(&a, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)?;
    protect(&y, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)?;
    Ok(())
}

/// An input in memory the process may only read (PROT_READ) is used in
/// place too: the writable pin fails with EFAULT and libnpu pins it
/// read-only.
fn read_only_input(m: &Models) -> Result<(), String> {
    let (mut a, mut b, mut y) = (pages(M * K * 4)?, pages(K * N * 4)?, pages(M * N * 4)?);
    let (av, bv) = (ints(M * K, 14), ints(K * N, 15));
    put(&mut a, 0, &av);
    put(&mut b, 0, &bv);
    protect(&a, ProtFlags::PROT_READ)?;
    let r = m.a.request();
    bind_in(&r, "a", &a, 0, M * K * 4)?;
    bind_in(&r, "b", &b, 0, K * N * 4)?;
    bind_out(&r, "y", &mut y, M * N * 4)?;
    let s = r.run().map_err(e2s);
    drop(r);
    protect(&a, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)?;
    let s = s?;
    compare(
        "y from a read-only a",
        &get(&y, 0, M * N),
        &matmul(&av, &bv, M, K, N),
    )?;
    if s.uploaded != 0 {
        return Err(format!("{} bytes uploaded; want none", s.uploaded));
    }
    Ok(())
}

/// Memory that cannot be used in place is copied, with the reason: an input
/// that does not start a page, an output overlapping another binding.
fn copied_when_not_in_place(m: &Models) -> Result<(), String> {
    let (mut a, mut b, mut y) = (pages(M * K * 4 + 64)?, pages(K * N * 4)?, pages(M * N * 4)?);
    let (av, bv) = (ints(M * K, 8), ints(K * N, 9));
    put(&mut a, 16, &av);
    put(&mut b, 0, &bv);
    let want = matmul(&av, &bv, M, K, N);
    let r = m.a.request();
    bind_in(&r, "a", &a, 16, M * K * 4)?;
    bind_in(&r, "b", &b, 0, K * N * 4)?;
    bind_out(&r, "y", &mut y, M * N * 4)?;
    let s = r.run().map_err(e2s)?;
    compare("y with an unaligned a", &get(&y, 0, M * N), &want)?;
    expect_zero_copy(&r, &["b", "y"], true)?;
    expect_zero_copy(&r, &["a"], false)?;
    let why = r.copy_reason("a").map_err(e2s)?.unwrap_or_default();
    if !why.contains("does not start a page") {
        return Err(format!("the unaligned input's copy reason: `{why}`"));
    }
    if s.uploaded != (M * K * 4) as u64 || s.downloaded != 0 {
        return Err(format!(
            "{} bytes uploaded, {} downloaded; want a's {} and none",
            s.uploaded,
            s.downloaded,
            M * K * 4
        ));
    }
    // y over b's memory: b is read in place, y is copied out after the run
    // (the NPU must not write what it reads).
    drop(r);
    let mut bm = pages(K * N * 4)?;
    put(&mut bm, 0, &bv);
    let r = m.a.request();
    bind_in(&r, "a", &a, 16, M * K * 4)?;
    bind_in(&r, "b", &bm, 0, K * N * 4)?;
    bind_out(&r, "y", &mut bm, M * N * 4)?;
    r.run().map_err(e2s)?;
    compare("y written over b", &get(&bm, 0, M * N), &want)?;
    expect_zero_copy(&r, &["b"], true)?;
    expect_zero_copy(&r, &["y"], false)?;
    let why = r.copy_reason("y").map_err(e2s)?.unwrap_or_default();
    if !why.contains("overlaps") {
        return Err(format!("the overlapping output's copy reason: `{why}`"));
    }
    Ok(())
}

/// A's output exported and bound as B's input; A's inputs and B's other
/// input and output bound in place: a chain with no CPU copy at all.
struct Chain {
    ra: InferRequest,
    rb: InferRequest,
    a: MmapMut,
    b: MmapMut,
    w: MmapMut,
    z: MmapMut,
    fd: OwnedFd,
}

fn chain(m: &Models) -> Result<Chain, String> {
    let (mut a, mut b, mut w, mut z) = (
        pages(M * K * 4)?,
        pages(K * N * 4)?,
        pages(N * P * 4)?,
        pages(M * P * 4)?,
    );
    put(&mut a, 0, &ints(M * K, 10));
    put(&mut b, 0, &ints(K * N, 11));
    put(&mut w, 0, &ints(N * P, 12));
    let (ra, rb) = (m.a.request(), m.b.request());
    bind_in(&ra, "a", &a, 0, M * K * 4)?;
    bind_in(&ra, "b", &b, 0, K * N * 4)?;
    let fd = ra.export_output_dmabuf("y").map_err(e2s)?;
    rb.bind_input_dmabuf("x", fd.as_fd()).map_err(e2s)?;
    bind_in(&rb, "w", &w, 0, N * P * 4)?;
    bind_out(&rb, "z", &mut z, M * P * 4)?;
    Ok(Chain {
        ra,
        rb,
        a,
        b,
        w,
        z,
        fd,
    })
}

impl Chain {
    fn want_y(&self) -> Vec<f32> {
        matmul(&get(&self.a, 0, M * K), &get(&self.b, 0, K * N), M, K, N)
    }

    fn want_z(&self) -> Vec<f32> {
        matmul(&self.want_y(), &get(&self.w, 0, N * P), M, N, P)
    }
}

fn chained_through_a_dma_buf(c: &Chain) -> Result<(), String> {
    let sa = c.ra.run().map_err(e2s)?;
    let sb = c.rb.run().map_err(e2s)?;
    compare("z = (a @ b) @ w", &get(&c.z, 0, M * P), &c.want_z())?;
    compare(
        "A's output read back",
        &floats(&c.ra.output("y").map_err(e2s)?),
        &c.want_y(),
    )?;
    expect_zero_copy(&c.ra, &["a", "b", "y"], true)?;
    expect_zero_copy(&c.rb, &["x", "w", "z"], true)?;
    if [sa.uploaded, sa.downloaded, sb.uploaded, sb.downloaded] != [0; 4] {
        return Err(format!(
            "bytes copied: A up {} down {}, B up {} down {}; want none",
            sa.uploaded, sa.downloaded, sb.uploaded, sb.downloaded
        ));
    }
    Ok(())
}

/// DMA_BUF_IOCTL_SYNC (include/uapi/linux/dma-buf.h): _IOW('b', 0, u64).
const DMA_BUF_IOCTL_SYNC: u64 = 0x4008_6200;
const DMA_BUF_SYNC_READ: u64 = 1;
const DMA_BUF_SYNC_START: u64 = 0;
const DMA_BUF_SYNC_END: u64 = 4;

fn dma_buf_sync(fd: BorrowedFd<'_>, flags: u64) -> Result<(), String> {
    let arg = flags;
    // SAFETY: DMA_BUF_IOCTL_SYNC reads one u64 that outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), DMA_BUF_IOCTL_SYNC as _, &arg) };
    if r != 0 {
        return Err(format!(
            "DMA_BUF_IOCTL_SYNC: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// mmap() the dma-buf and compare its first M x N floats with `want`.
fn read_mapped(fd: BorrowedFd<'_>, want: &[f32]) -> Result<(), String> {
    let page = npu::device::page_size();
    let len = (want.len() * 4).div_ceil(page) * page;
    // SAFETY: a shared read-only mapping of the dma-buf, read below only.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(fd.as_raw_fd()) }
        .map_err(|e| format!("mmap of the dma-buf: {e}"))?;
    dma_buf_sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)?;
    let got = floats(&map[..want.len() * 4]);
    dma_buf_sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ)?;
    compare("the mapped dma-buf", &got, want)
}

/// A forked child opens its own device file, imports the descriptor it
/// inherited (another file, another NPU address space), maps it and runs
/// B on it; the parent waits for its verdict.
fn child_imports(c: &Chain) -> Result<(), String> {
    let fd = c.fd.as_raw_fd();
    let (want_y, want_z, w) = (c.want_y(), c.want_z(), get(&c.w, 0, N * P));
    let proc = child::spawn(move || {
        let run = || -> Result<(), String> {
            // SAFETY: inherited across fork, open for the child's life.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            read_mapped(fd, &want_y)?;
            let npu = Npu::open().map_err(e2s)?;
            let mb = npu.load_text(MODEL_B).map_err(e2s)?;
            let r = mb.request();
            r.bind_input_dmabuf("x", fd).map_err(e2s)?;
            r.set_input("w", &to_bytes(&w)).map_err(e2s)?;
            r.run().map_err(e2s)?;
            expect_zero_copy(&r, &["x"], true)?;
            compare(
                "the child's z",
                &floats(&r.output("z").map_err(e2s)?),
                &want_z,
            )
        };
        match run() {
            Ok(()) => 0,
            Err(e) => {
                println!("# child: {e}");
                1
            }
        }
    })?;
    match proc.wait()? {
        child::Exit::Code(0) => Ok(()),
        e => Err(format!("the child failed: {e}")),
    }
}

/// Asynchronous: A starts, B starts after A's sync_file (the kernel orders
/// B's job after A's: no CPU wait between them), with a changed input.
fn chained_by_sync_file(c: &mut Chain) -> Result<(), String> {
    put(&mut c.a, 0, &ints(M * K, 13));
    let fa = c.ra.start(&[]).map_err(e2s)?;
    let sync_file = fa.export_sync_file().map_err(e2s)?;
    let fb = c.rb.start_after(&[], vec![sync_file]).map_err(e2s)?;
    fb.wait(None).map_err(e2s)?;
    fa.wait(None).map_err(e2s)?;
    compare("z after A's sync_file", &get(&c.z, 0, M * P), &c.want_z())
}

/// Lifetime: the descriptor closed and request A freed, B still reads the
/// buffer (it holds it); what A wrote last is there.
fn outlives_its_exporter(c: Chain) -> Result<(), String> {
    let Chain {
        ra,
        rb,
        a,
        b,
        w,
        mut z,
        fd,
    } = c;
    let want = matmul(
        &matmul(&get(&a, 0, M * K), &get(&b, 0, K * N), M, K, N),
        &get(&w, 0, N * P),
        M,
        N,
        P,
    );
    drop(fd);
    drop(ra);
    put(&mut z, 0, &vec![f32::NAN; M * P]);
    rb.run().map_err(e2s)?;
    compare("z after A and the fd are gone", &get(&z, 0, M * P), &want)?;
    drop(rb);
    drop((a, b, w, z));
    Ok(())
}

fn expect_error(
    what: &str,
    r: Result<(), npu::api::Error>,
    status: Status,
    text: &str,
) -> Result<(), String> {
    match r {
        Ok(()) => Err(format!("{what}: succeeded")),
        Err(e) if e.status == status && e.message.contains(text) => {
            println!("# {what}: {}", e.message);
            Ok(())
        }
        Err(e) => Err(format!(
            "{what}: {}, want {} and `{text}`",
            e2s(e),
            status.name()
        )),
    }
}

/// Wrong sizes and descriptors are clear errors; one object cannot be a
/// request's output and another of its tensors.
fn errors(npu: &Npu, m: &Models) -> Result<(), String> {
    let ra = m.a.request();
    let fd = ra.export_output_dmabuf("y").map_err(e2s)?;
    let wide = npu.load_text(MODEL_WIDE).map_err(e2s)?;
    let rw = wide.request();
    expect_error(
        "an 8-page input bound to a 1-page dma-buf",
        rw.bind_input_dmabuf("x", fd.as_fd()),
        Status::InvalidArgument,
        "the dma-buf is 4096 bytes; input `x`",
    )?;
    let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    expect_error(
        "/dev/null as a dma-buf",
        rw.bind_input_dmabuf("x", null.as_fd()),
        Status::InvalidArgument,
        "is not a dma-buf",
    )?;
    // A descriptor number nothing has open (one just closed).
    let closed = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    let n = closed.as_raw_fd();
    drop(closed);
    // SAFETY: only passed to an ioctl that reports EBADF for it.
    let stale = unsafe { BorrowedFd::borrow_raw(n) };
    expect_error(
        "a closed descriptor",
        rw.bind_input_dmabuf("x", stale),
        Status::InvalidArgument,
        "not an open file descriptor",
    )?;
    // B's output z exported and bound as B's own input x (both one page):
    // the run would read x where it writes z.
    let rb = m.b.request();
    let zfd = rb.export_output_dmabuf("z").map_err(e2s)?;
    rb.bind_input_dmabuf("x", zfd.as_fd()).map_err(e2s)?;
    rb.set_input("w", &to_bytes(&ints(N * P, 1))).map_err(e2s)?;
    expect_error(
        "one dma-buf as input and output of a request",
        rb.run().map(drop),
        Status::InvalidArgument,
        "are bound to the same buffer object",
    )?;
    Ok(())
}

/// The chain, or why a test point that needs it fails.
fn need(c: &Option<Chain>) -> Result<&Chain, String> {
    c.as_ref().ok_or_else(|| "no chain (see above)".to_string())
}

fn main() {
    let mut tap = Tap::new(11);
    // The forking test first, while the process has one thread.
    tap.check(
        "the CPU never touches bound memory used in place (child: input PROT_NONE, output PROT_READ during a run)",
        cpu_never_touches_bound_memory(),
    );
    let npu = match Npu::open() {
        Ok(n) => n,
        Err(e) => {
            println!("# cannot open the NPU: {}", e2s(e));
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let models = match load(&npu) {
        Ok(m) => m,
        Err(e) => {
            println!("# cannot compile the test models: {e}");
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    tap.check(
        "bound page-aligned buffers are used in place: output written straight into them, a changed input read without set_input, nothing copied",
        bound_in_place(&npu, &models),
    );
    tap.check(
        "an input in read-only memory is used in place (pinned read-only)",
        read_only_input(&models),
    );
    tap.check(
        "an unaligned input and an output overlapping an input are copied, with the reason",
        copied_when_not_in_place(&models),
    );
    let mut c = match chain(&models) {
        Ok(c) => Some(c),
        Err(e) => {
            println!("# setting up the A -> B chain: {e}");
            None
        }
    };
    tap.check(
        "A's output exported as a dma-buf is B's input: z = (a @ b) @ w with no byte copied",
        need(&c).and_then(chained_through_a_dma_buf),
    );
    tap.check(
        "the exported dma-buf maps for the CPU and holds A's output",
        need(&c).and_then(|c| read_mapped(c.fd.as_fd(), &c.want_y())),
    );
    tap.check(
        "a forked child imports the dma-buf into its own device file, maps it and runs B on it",
        need(&c).and_then(child_imports),
    );
    tap.check(
        "B runs after A's sync_file (kernel-ordered chain) and reads A's new output",
        match c.as_mut() {
            Some(c) => chained_by_sync_file(c),
            None => Err("no chain".into()),
        },
    );
    tap.check(
        "B keeps the buffer after the fd is closed and A is freed",
        match c.take() {
            Some(c) => outlives_its_exporter(c),
            None => Err("no chain".into()),
        },
    );
    tap.check(
        "wrong sizes, a non-dma-buf, a closed fd and one object as input and output are clear errors",
        errors(&npu, &models),
    );
    tap.check(
        "the unaligned fallback and the errors left the device working: a bound run is still right",
        bound_in_place(&npu, &models),
    );
    std::process::exit(tap.finish());
}
