//! Host-speed matrix multiply for the compute engine.

/// `c[m,n] += a[m,k] * b` where b is `[k,n]`, or `[n,k]` when `bt`.
/// All operands are dense row-major.
pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], bt: bool, c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand sizes checked by caller"
    );
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    if !bt && k <= SMALL_K {
        // The in-place kernel on a copy, so that a MATMUL whose operands
        // overlap (the device's copying path) gets the same bits.
        let mut words: Vec<u32> = bytemuck::cast_slice(&a[..m * k]).to_vec();
        words.extend_from_slice(bytemuck::cast_slice(&b[..k * n]));
        words.extend_from_slice(bytemuck::cast_slice(&c[..m * n]));
        let s = GemmShape { m, n, k };
        sgemm_small_k(&mut words, s, (0, k), (m * k, n), (m * k + k * n, n), true);
        let out: &[f32] = bytemuck::cast_slice(&words[m * k + k * n..]);
        c[..m * n].copy_from_slice(out);
        return;
    }
    let (rsb, csb) = if bt { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the pointers come from slices at least as long as the strided
    // extents the strides describe (asserted above), and `c` does not alias
    // `a` or `b` (it is a distinct mutable slice).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            rsb,
            csb,
            1.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[derive(Clone, Copy)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// f32 GEMM directly on SRAM words: `a` at (word offset, row stride), `b`
/// at (offset, row stride, transposed), `c` at (offset, row stride). The
/// caller has checked that every tile lies inside `sram` and that `c` does
/// not overlap `a` or `b`.
pub fn sgemm_in_place(
    sram: &mut [u32],
    s: GemmShape,
    (a, lda): (usize, usize),
    (b, ldb, bt): (usize, usize, bool),
    (c, ldc): (usize, usize),
    accumulate: bool,
) {
    if s.m == 0 || s.n == 0 {
        return;
    }
    let last = |base: usize, rows: usize, cols: usize, ld: usize| base + (rows - 1) * ld + cols;
    let (brows, bcols) = if bt { (s.n, s.k) } else { (s.k, s.n) };
    let in_range = s.k == 0
        || (last(a, s.m, s.k, lda) <= sram.len() && last(b, brows, bcols, ldb) <= sram.len());
    assert!(
        in_range && last(c, s.m, s.n, ldc) <= sram.len(),
        "gemm tiles checked by caller"
    );
    if !bt && (1..=SMALL_K).contains(&s.k) {
        sgemm_small_k(sram, s, (a, lda), (b, ldb), (c, ldc), accumulate);
        return;
    }
    let (rsb, csb) = if bt {
        (1, ldb as isize)
    } else {
        (ldb as isize, 1)
    };
    let base = sram.as_mut_ptr().cast::<f32>();
    // SAFETY: u32 and f32 have the same size and alignment and every bit
    // pattern is a valid f32. All three tiles lie inside `sram` (asserted
    // above), and the written tile `c` does not overlap the read tiles `a`
    // and `b` (checked by the caller), so the raw pointers, all derived from
    // the one exclusive borrow of `sram`, never alias a write.
    unsafe {
        matrixmultiply::sgemm(
            s.m,
            s.k,
            s.n,
            1.0,
            base.add(a),
            lda as isize,
            1,
            base.add(b),
            rsb,
            csb,
            if accumulate { 1.0 } else { 0.0 },
            base.add(c),
            ldc as isize,
            1,
        );
    }
}

/// Most `k` that [`sgemm_small_k`] takes instead of the GEMM crate.
pub const SMALL_K: usize = 8;

/// Columns of C per block of [`sgemm_small_k`]: B's rows of a block stay in
/// the L1 cache while C's rows pass.
const SMALL_K_COLS: usize = 512;

/// [`sgemm_in_place`] for `k` of 1 to [`SMALL_K`] and B not transposed (a
/// direct convolution's tap over few input channels, a depthwise-like
/// product). The GEMM crate packs both operands for every call and runs
/// its kernel on tiles masked to m, both of which cost more than the
/// arithmetic at such k; this walks C's rows instead, vectorised along
/// them. Each element is what the crate computes, bit for bit: its sum
/// `ab` of the k products in order from +0, fused multiply-adds on a host
/// with FMA (the crate's AVX-512 and AVX2+FMA kernels) and a multiply and
/// an add otherwise, then `c + ab` (one rounding) with ACCUMULATE or `ab`.
fn sgemm_small_k(
    sram: &mut [u32],
    s: GemmShape,
    a: (usize, usize),
    b: (usize, usize),
    c: (usize, usize),
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        fn avx512(
            sram: &mut [u32],
            s: GemmShape,
            a: (usize, usize),
            b: (usize, usize),
            c: (usize, usize),
            accumulate: bool,
        ) {
            small_k_body::<true>(sram, s, a, b, c, accumulate);
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2_fma(
            sram: &mut [u32],
            s: GemmShape,
            a: (usize, usize),
            b: (usize, usize),
            c: (usize, usize),
            accumulate: bool,
        ) {
            small_k_body::<true>(sram, s, a, b, c, accumulate);
        }
        // The crate's own choice of kernel (matrixmultiply 0.3's sgemm).
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, which has FMA (checked above).
            unsafe { avx512(sram, s, a, b, c, accumulate) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { avx2_fma(sram, s, a, b, c, accumulate) };
            return;
        }
    }
    small_k_body::<false>(sram, s, a, b, c, accumulate);
}

/// The loops of [`sgemm_small_k`], compiled once per instruction set;
/// `FMA`: fused multiply-adds (only where the CPU has them).
#[inline(always)]
fn small_k_body<const FMA: bool>(
    sram: &mut [u32],
    s: GemmShape,
    (a, lda): (usize, usize),
    (b, ldb): (usize, usize),
    (c, ldc): (usize, usize),
    accumulate: bool,
) {
    let mut acc = [0f32; SMALL_K_COLS];
    for j0 in (0..s.n).step_by(SMALL_K_COLS) {
        let nb = SMALL_K_COLS.min(s.n - j0);
        let ab = &mut acc[..nb];
        for i in 0..s.m {
            let f: &[f32] = bytemuck::cast_slice(&*sram);
            let arow = &f[a + i * lda..][..s.k];
            let crow = c + i * ldc + j0;
            ab.fill(0.0);
            for (kk, &x) in arow.iter().enumerate() {
                let brow = &f[b + kk * ldb + j0..][..nb];
                for (t, &y) in ab.iter_mut().zip(brow) {
                    *t = if FMA { x.mul_add(y, *t) } else { *t + x * y };
                }
            }
            let out: &mut [f32] = bytemuck::cast_slice_mut(&mut sram[crow..crow + nb]);
            if accumulate {
                for (o, &t) in out.iter_mut().zip(ab.iter()) {
                    *o += t;
                }
            } else {
                out.copy_from_slice(ab);
            }
        }
    }
}

/// Which int8 GEMM kernel this host runs (chosen at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AVX-512 VNNI `vpdpbusd`.
    Avx512Vnni,
    /// AVX2 `vpmaddwd` on sign-extended operands, i32 accumulation.
    Avx2,
    /// Exact through the f32 GEMM (any host).
    F32,
}

impl Int8Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Avx512Vnni => "avx512-vnni",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::F32 => "f32",
        }
    }
}

/// The int8 kernel the device uses: this CPU's fastest, unless the
/// environment variable NPU_INT8_KERNEL names another one the CPU has
/// (`avx2`, `f32`; to measure on an AVX-512 host what AVX2 hosts get).
/// Read once.
pub fn int8_kernel() -> Int8Kernel {
    static CHOSEN: std::sync::OnceLock<Int8Kernel> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let have = cpu_int8_kernel();
        let Ok(want) = std::env::var("NPU_INT8_KERNEL") else {
            return have;
        };
        let usable = |k: Int8Kernel| match k {
            Int8Kernel::Avx512Vnni => have == Int8Kernel::Avx512Vnni,
            Int8Kernel::Avx2 => have != Int8Kernel::F32,
            Int8Kernel::F32 => true,
        };
        match [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2, Int8Kernel::F32]
            .into_iter()
            .find(|k| k.name() == want)
        {
            Some(k) if usable(k) => k,
            _ => {
                log::warn!(
                    "NPU_INT8_KERNEL={want:?} is not a kernel this CPU has; using {}",
                    have.name()
                );
                have
            }
        }
    })
}

/// The fastest exact int8 kernel this CPU has.
pub fn cpu_int8_kernel() -> Int8Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            return Int8Kernel::Avx512Vnni;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Int8Kernel::Avx2;
        }
    }
    Int8Kernel::F32
}

/// `c[m,n] += a[m,k] * b` over i8 inputs with i32 accumulation (wrapping,
/// as the hardware's 32-bit accumulators do), on the fastest kernel.
pub fn igemm(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], bt: bool, c: &mut [i32]) {
    igemm_with(int8_kernel(), m, n, k, a, b, bt, c, usize::MAX, &mut || {
        true
    });
}

/// [`igemm`] on a given kernel, in blocks of `block` rows of C with `poll`
/// before each (B is packed once); false when `poll` stopped it. A kernel
/// the CPU lacks falls back to [`Int8Kernel::F32`].
#[allow(clippy::too_many_arguments)]
pub fn igemm_with(
    kernel: Int8Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    b: &[i8],
    bt: bool,
    c: &mut [i32],
    block: usize,
    poll: &mut dyn FnMut() -> bool,
) -> bool {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand sizes checked by caller"
    );
    if m == 0 || n == 0 || k == 0 {
        return true;
    }
    let block = block.max(1);
    let mut rows = |f: &mut RowBlock| -> bool {
        let mut i0 = 0;
        while i0 < m {
            if !poll() {
                return false;
            }
            let mb = block.min(m - i0);
            f(&a[i0 * k..(i0 + mb) * k], mb, &mut c[i0 * n..(i0 + mb) * n]);
            i0 += mb;
        }
        true
    };
    #[cfg(target_arch = "x86_64")]
    {
        let have = cpu_int8_kernel();
        if kernel == Int8Kernel::Avx512Vnni && have == Int8Kernel::Avx512Vnni {
            let p = vnni::PackedB::new(n, k, b, if bt { k } else { n }, bt);
            // SAFETY (of run): AVX-512 F, BW and VNNI were detected above.
            return rows(&mut |ar, mb, cr| p.run(ar, k, mb, cr, n, false));
        }
        if kernel == Int8Kernel::Avx2 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY (of new and run): AVX2 was detected just now.
            let p = avx2::PackedB::new(n, k, b, if bt { k } else { n }, bt);
            return rows(&mut |ar, mb, cr| p.run(ar, k, mb, cr, n, false));
        }
    }
    let _ = kernel;
    let bf: Vec<f32> = b[..k * n].iter().map(|&x| x as f32).collect();
    rows(&mut |ar, mb, cr| igemm_f32_rows(mb, n, k, ar, &bf, bt, cr))
}

/// Whether [`igemm_in_place`] runs here: the int8 kernel is AVX2's or
/// AVX-512 VNNI's (the f32 path takes dense copies of the tiles, see
/// [`igemm_with`]).
pub fn igemm_in_place_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    match int8_kernel() {
        Int8Kernel::Avx2 => return std::arch::is_x86_feature_detected!("avx2"),
        Int8Kernel::Avx512Vnni => return cpu_int8_kernel() == Int8Kernel::Avx512Vnni,
        Int8Kernel::F32 => {}
    }
    false
}

/// int8 GEMM directly on SRAM with the AVX2 or the VNNI kernel, which read
/// A's and B's rows where they lie and add into C's: A's i8 at byte offset `a`, rows
/// `lda` bytes apart, B's likewise (n x k when `bt`), C's i32 at word
/// offset `c`, rows `ldc` words apart; C's rows in blocks of `block` with
/// `poll` before each, as [`igemm_with`]; false when `poll` stopped it.
/// Only called when [`igemm_in_place_supported`]. The caller has checked
/// that every tile lies inside `sram` and that C overlaps neither A nor B.
#[allow(clippy::too_many_arguments)]
pub fn igemm_in_place(
    sram: &mut [u32],
    s: GemmShape,
    (a, lda): (usize, usize),
    (b, ldb, bt): (usize, usize, bool),
    (c, ldc): (usize, usize),
    accumulate: bool,
    block: usize,
    poll: &mut dyn FnMut() -> bool,
) -> bool {
    assert!(igemm_in_place_supported(), "checked by the caller");
    #[cfg(target_arch = "x86_64")]
    {
        igemm_simd_in_place(
            int8_kernel(),
            sram,
            s,
            (a, lda),
            (b, ldb, bt),
            (c, ldc),
            accumulate,
            block,
            poll,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (sram, s, a, lda, b, ldb, bt, c, ldc, accumulate, block, poll);
        unreachable!("no in-place int8 kernel on this architecture")
    }
}

/// [`igemm_in_place`] on `kernel` (AVX2, or AVX-512 VNNI): only called once
/// the CPU was found to have it.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn igemm_simd_in_place(
    kernel: Int8Kernel,
    sram: &mut [u32],
    s: GemmShape,
    (a, lda): (usize, usize),
    (b, ldb, bt): (usize, usize, bool),
    (c, ldc): (usize, usize),
    accumulate: bool,
    block: usize,
    poll: &mut dyn FnMut() -> bool,
) -> bool {
    if s.m == 0 || s.n == 0 {
        return true;
    }
    let end = |base: usize, rows: usize, cols: usize, ld: usize| base + (rows - 1) * ld + cols;
    let (brows, bcols) = if bt { (s.n, s.k) } else { (s.k, s.n) };
    let c_end = end(c, s.m, s.n, ldc);
    let (bytes, c_bytes) = (sram.len() * 4, (c * 4, c_end * 4));
    let apart = |lo: usize, hi: usize| hi <= c_bytes.0 || c_bytes.1 <= lo;
    let a_end = if s.k == 0 { a } else { end(a, s.m, s.k, lda) };
    let b_end = if s.k == 0 {
        b
    } else {
        end(b, brows, bcols, ldb)
    };
    assert!(
        c_end <= sram.len()
            && a_end <= bytes
            && b_end <= bytes
            && (s.k == 0 || (apart(a, a_end) && apart(b, b_end)))
            && (s.m == 1 || ldc >= s.n),
        "gemm tiles checked by caller"
    );
    let base = sram.as_mut_ptr();
    // SAFETY: the three regions lie inside `sram` and C's overlaps
    // neither A's nor B's (asserted above), so the one mutable slice
    // aliases nothing the shared ones see; i8 and i32 accept any bits,
    // and u32 words are aligned for i32.
    let (av, bv, cv) = unsafe {
        (
            std::slice::from_raw_parts(base.cast::<i8>().add(a), a_end - a),
            std::slice::from_raw_parts(base.cast::<i8>().add(b), b_end - b),
            std::slice::from_raw_parts_mut(base.add(c).cast::<i32>(), c_end - c),
        )
    };
    if s.k == 0 {
        if !accumulate {
            for row in cv.chunks_mut(ldc.max(s.n)) {
                let len = s.n.min(row.len());
                row[..len].fill(0);
            }
        }
        return true;
    }
    let block = block.max(1);
    let mut in_blocks = |run: &mut RowBlock| {
        let mut i0 = 0;
        while i0 < s.m {
            if !poll() {
                return false;
            }
            let mb = block.min(s.m - i0);
            run(&av[i0 * lda..], mb, &mut cv[i0 * ldc..]);
            i0 += mb;
        }
        true
    };
    // SAFETY (of new and run): the caller checked that the CPU has the
    // kernel's instructions.
    if kernel == Int8Kernel::Avx512Vnni {
        let p = vnni::PackedB::new(s.n, s.k, bv, ldb, bt);
        return in_blocks(&mut |ar, mb, cr| p.run(ar, lda, mb, cr, ldc, !accumulate));
    }
    let p = avx2::PackedB::new(s.n, s.k, bv, ldb, bt);
    in_blocks(&mut |ar, mb, cr| p.run(ar, lda, mb, cr, ldc, !accumulate))
}

/// Multiplies a block of rows of A (and their rows of C) by the packed B.
type RowBlock<'a> = dyn FnMut(&[i8], usize, &mut [i32]) + 'a;

/// The portable path: exact through the f32 GEMM (see [`igemm_f32_rows`]).
pub fn igemm_via_f32(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], bt: bool, c: &mut [i32]) {
    igemm_with(
        Int8Kernel::F32,
        m,
        n,
        k,
        a,
        b,
        bt,
        c,
        usize::MAX,
        &mut || true,
    );
}

/// Exact through the f32 GEMM: a product of two i8 is at most 2^14 in
/// magnitude, so every partial sum of up to 1024 products is an integer
/// below 2^24, which f32 represents exactly. K is cut into chunks of 1024
/// whose exact sums are added in i32. `bf` is B converted to f32.
fn igemm_f32_rows(m: usize, n: usize, k: usize, a: &[i8], bf: &[f32], bt: bool, c: &mut [i32]) {
    const EXACT_K: usize = 1024;
    let af: Vec<f32> = a[..m * k].iter().map(|&x| x as f32).collect();
    let mut part = vec![0f32; m * n];
    let (rsb, csb) = if bt {
        (1isize, k as isize)
    } else {
        (n as isize, 1isize)
    };
    let mut k0 = 0;
    while k0 < k {
        let kc = EXACT_K.min(k - k0);
        let b_off = if bt { k0 } else { k0 * n };
        // SAFETY: `af` is m x k (row stride k), `bf` is k x n or n x k with
        // the strides above; the chunk [k0, k0 + kc) stays inside both, and
        // `part` is a distinct m x n buffer.
        unsafe {
            matrixmultiply::sgemm(
                m,
                kc,
                n,
                1.0,
                af.as_ptr().add(k0),
                k as isize,
                1,
                bf.as_ptr().add(b_off),
                rsb,
                csb,
                0.0,
                part.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        for (acc, &p) in c.iter_mut().zip(&part) {
            *acc = acc.wrapping_add(p as i32);
        }
        k0 += kc;
    }
}

/// int8 GEMM on AVX-512 VNNI, in the outer-product form: B is packed as
/// quads of i8 along K, interleaved per column, so one 512-bit vector holds
/// 16 columns' quads; each quad of A is broadcast, and `vpdpbusd` multiplies
/// 4 pairs and adds them into 16 i32 accumulators (wrapping, like the
/// hardware's). `vpdpbusd` wants A unsigned, so A is biased by +128 and
/// 128 * (column sum of B) is subtracted at the end: exact modulo 2^32,
/// which is what the wrapping int32 accumulator means anyway.
/// An 8 x 32 block of C stays in 16 registers for the whole K loop.
#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    const MR: usize = 8;
    const NR: usize = 32;

    /// B packed once for any number of row blocks of A.
    pub(super) struct PackedB {
        n: usize,
        k: usize,
        kq: usize,
        np: usize,
        bpack: Vec<i32>,
        /// 128 times each column's sum (the +128 bias of A times B), padded
        /// with zeros to whole panels.
        bias: Vec<i32>,
    }

    impl PackedB {
        /// B is k x n, or n x k when `bt`, with rows `ldb` apart. Only
        /// called after AVX-512 F, BW and VNNI were detected.
        pub(super) fn new(n: usize, k: usize, b: &[i8], ldb: usize, bt: bool) -> Self {
            let (rows, cols) = if bt { (n, k) } else { (k, n) };
            assert!(
                n > 0 && k > 0 && (rows == 1 || ldb >= cols) && b.len() >= (rows - 1) * ldb + cols
            );
            let kq = k.div_ceil(4); // K quads
            let np = n.div_ceil(NR) * NR;
            // bpack[q][j] = b[4q..4q+4][j] as one 32-bit lane (zero past the
            // edges); colsum[j] = sum of column j, for the bias correction.
            let mut bpack = vec![0i32; kq * np];
            let mut colsum = vec![0i32; np];
            // SAFETY: the caller checked for AVX-512 F and BW at run time.
            unsafe {
                if bt {
                    pack_columns(n, k, np, b, ldb, &mut bpack, &mut colsum);
                } else {
                    pack_rows(n, k, np, b, ldb, &mut bpack, &mut colsum);
                }
            }
            let bias = colsum.iter().map(|s| s.wrapping_mul(128)).collect();
            PackedB {
                n,
                k,
                kq,
                np,
                bpack,
                bias,
            }
        }

        /// `c[m,n] += a[m,k] * B` for m rows of A, rows of A `lda` apart and
        /// rows of C `ldc` apart (each row at least k and n long);
        /// `overwrite`: `c = a * B` instead (C's old values are not read).
        /// Only called after AVX-512 F, BW and VNNI were detected.
        pub(super) fn run(
            &self,
            a: &[i8],
            lda: usize,
            m: usize,
            c: &mut [i32],
            ldc: usize,
            overwrite: bool,
        ) {
            let (n, k, kq) = (self.n, self.k, self.kq);
            if m == 0 {
                return;
            }
            assert!(
                (m == 1 || (lda >= k && ldc >= n))
                    && a.len() >= (m - 1) * lda + k
                    && c.len() >= (m - 1) * ldc + n
            );
            // Whole tiles of MR rows; the padding rows stay zero.
            let mut apack = vec![0i32; m.div_ceil(MR) * MR * kq];
            // SAFETY: the caller checked for AVX-512 F, BW and VNNI at run
            // time.
            unsafe {
                pack_a(m, k, kq, a, lda, &mut apack);
                blocks(
                    (m, n, kq, self.np),
                    (&apack, &self.bpack, &self.bias),
                    c,
                    ldc,
                    !overwrite,
                );
            }
        }
    }

    /// Quads of a row-major K x N B: rows 4q..4q + 4 of each column as the
    /// bytes of one lane (the loop over columns vectorizes).
    #[target_feature(enable = "avx512f,avx512bw")]
    fn pack_rows(
        n: usize,
        k: usize,
        np: usize,
        b: &[i8],
        ldb: usize,
        bpack: &mut [i32],
        colsum: &mut [i32],
    ) {
        let zeros = vec![0i8; n];
        for (q, dst) in bpack.chunks_exact_mut(np).enumerate() {
            let row = |t: usize| {
                let p = 4 * q + t;
                if p < k {
                    &b[p * ldb..p * ldb + n]
                } else {
                    &zeros[..]
                }
            };
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            for ((((d, &x0), &x1), &x2), &x3) in dst.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
                *d = i32::from_le_bytes([x0 as u8, x1 as u8, x2 as u8, x3 as u8]);
            }
        }
        for row in (0..k).map(|p| &b[p * ldb..p * ldb + n]) {
            for (cs, &v) in colsum.iter_mut().zip(row) {
                *cs = cs.wrapping_add(v as i32);
            }
        }
    }

    /// Quads of an N x K (transposed) B: column j is row j of `b`, its
    /// quads are 4 consecutive bytes, spread `np` apart.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn pack_columns(
        n: usize,
        k: usize,
        np: usize,
        b: &[i8],
        ldb: usize,
        bpack: &mut [i32],
        colsum: &mut [i32],
    ) {
        for (j, col) in (0..n).map(|j| (j, &b[j * ldb..j * ldb + k])) {
            for (q, four) in col.chunks(4).enumerate() {
                let mut quad = [0u8; 4];
                for (byte, &v) in quad.iter_mut().zip(four) {
                    *byte = v as u8;
                }
                bpack[q * np + j] = i32::from_le_bytes(quad);
            }
            colsum[j] = col.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32));
        }
    }

    /// apack[i][q] = a[i][4q..4q+4] + 128 as unsigned bytes (the padding
    /// meets zeros of B, so its value does not matter).
    #[target_feature(enable = "avx512f,avx512bw")]
    fn pack_a(m: usize, k: usize, kq: usize, a: &[i8], lda: usize, apack: &mut [i32]) {
        let rows = (0..m).map(|i| &a[i * lda..i * lda + k]);
        for (dst, row) in apack.chunks_exact_mut(kq).zip(rows) {
            for (d, four) in dst.iter_mut().zip(row.chunks_exact(4)) {
                let quad = [four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8];
                *d = (u32::from_le_bytes(quad) ^ 0x8080_8080) as i32;
            }
            let tail = row.chunks_exact(4).remainder();
            if !tail.is_empty() {
                let mut quad = [0u8; 4];
                for (byte, &v) in quad.iter_mut().zip(tail) {
                    *byte = (v as u8) ^ 0x80;
                }
                dst[kq - 1] = i32::from_le_bytes(quad);
            }
        }
    }

    /// `c += A' * B - bias` by 8 x 32 tiles of C (`c = ...` unless `add`),
    /// column panels outermost (one panel of B, kq x 32 lanes, stays in
    /// cache while every block of rows streams past it): 16 accumulators in
    /// registers for the whole K loop, one broadcast of A's quad per row and
    /// two loads of B per quad. A is padded with zero rows to whole tiles
    /// (their sums are not stored), B with zero columns to whole panels;
    /// masked stores keep to C's columns. Rows of C are `ldc` apart.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn blocks(
        (m, n, kq, np): (usize, usize, usize, usize),
        (apack, bpack, bias): (&[i32], &[i32], &[i32]),
        c: &mut [i32],
        ldc: usize,
        add: bool,
    ) {
        assert!(
            m > 0
                && kq > 0
                && np >= n
                && np.is_multiple_of(NR)
                && apack.len() >= m.div_ceil(MR) * MR * kq
                && bpack.len() >= kq * np
                && bias.len() >= np
                && (m == 1 || ldc >= n)
                && c.len() >= (m - 1) * ldc + n
        );
        for j0 in (0..n).step_by(NR) {
            let cols = NR.min(n - j0);
            let lanes = |h: usize| cols.saturating_sub(16 * h).min(16) as u32;
            let masks = [lanes(0), lanes(1)].map(|l| ((1u32 << l) - 1) as __mmask16);
            let bs = &bias[j0..j0 + NR];
            // SAFETY: `bs` holds NR = 32 i32, two loads of 16.
            let biases = unsafe {
                [
                    _mm512_loadu_si512(bs.as_ptr().cast()),
                    _mm512_loadu_si512(bs[16..].as_ptr().cast()),
                ]
            };
            for i0 in (0..m).step_by(MR) {
                let rows = MR.min(m - i0);
                let mut acc = [[_mm512_setzero_si512(); 2]; MR];
                let (mut ap, mut bp) = (apack[i0 * kq..].as_ptr(), bpack[j0..].as_ptr());
                for _ in 0..kq {
                    // SAFETY: `bp` walks kq rows of `bpack`, np apart, from
                    // column j0 (j0 + NR <= np); `ap` walks kq quads of rows
                    // i0..i0 + MR of `apack`, kq apart (all asserted above);
                    // loadu has no alignment requirement.
                    unsafe {
                        let b0 = _mm512_loadu_si512(bp.cast());
                        let b1 = _mm512_loadu_si512(bp.add(16).cast());
                        for (ii, acc_row) in acc.iter_mut().enumerate() {
                            let av = _mm512_set1_epi32(*ap.add(ii * kq));
                            acc_row[0] = _mm512_dpbusd_epi32(acc_row[0], av, b0);
                            acc_row[1] = _mm512_dpbusd_epi32(acc_row[1], av, b1);
                        }
                        ap = ap.add(1);
                        bp = bp.add(np);
                    }
                }
                let cp = c[i0 * ldc + j0..].as_mut_ptr();
                // Whole tiles with fixed indices, so the accumulators never
                // leave their registers; a bottom edge by its rows.
                let tile = if rows == MR { &acc[..] } else { &acc[..rows] };
                for (ii, acc_row) in tile.iter().enumerate() {
                    for (h, &x) in acc_row.iter().enumerate() {
                        if masks[h] == 0 {
                            continue;
                        }
                        // SAFETY: row i0 + ii < m of C, ldc apart, columns
                        // j0 + 16h.. of which the mask keeps those below n
                        // (16h < cols); masked-off lanes are not accessed.
                        unsafe {
                            let p = cp.add(ii * ldc + 16 * h).cast::<i32>();
                            let sum = _mm512_sub_epi32(x, biases[h]);
                            let sum = if add {
                                _mm512_add_epi32(_mm512_maskz_loadu_epi32(masks[h], p), sum)
                            } else {
                                sum
                            };
                            _mm512_mask_storeu_epi32(p, masks[h], sum);
                        }
                    }
                }
            }
        }
    }
}

/// int8 GEMM on AVX2, exact: operands are sign-extended to i16 and taken in
/// pairs along K (A's pair broadcast to every lane, B's pairs one column per
/// 32-bit lane), `vpmaddwd` multiplies the two pairs and adds them into one
/// i32 (|sum| <= 2 * 128 * 128, exact), and `vpaddd` accumulates (wrapping,
/// like the hardware). Per pair of K the 6 x 16 micro-kernel issues 12
/// `vpmaddwd`, 12 `vpaddd`, 6 broadcasts and 2 loads: the multiplies and
/// adds fill the four vector pipes, the broadcasts and loads the load
/// pipes, so nothing else may be in the loop. B is packed once per MATMUL
/// into panels of 16 columns (pair-major, on cache lines); A
/// is only sign-extended, row by row (a row's pairs are its consecutive
/// i16), which the packing does 16 bytes at a time. The micro-kernel adds
/// its 12 accumulators straight into C with vector loads and stores (only
/// ragged edge tiles go through a scalar loop).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    const MR: usize = 6;
    const NR: usize = 16;
    /// Vectors per row of the micro-kernel.
    const NV: usize = NR / 8;
    /// K pairs and rows of A per cache block: a 256-pair slice of a B panel
    /// (16 KiB) stays in L1 and a 96 x 256-pair block of A (96 KiB) in L2
    /// while the micro-kernel sweeps them.
    const KC: usize = 256;
    const MC: usize = 96;

    /// Two i8 as sign-extended i16 halves of one 32-bit lane.
    fn pair(lo: i8, hi: i8) -> i32 {
        ((lo as i16 as u16 as u32) | ((hi as i16 as u16 as u32) << 16)) as i32
    }

    /// i32s starting on a cache line, so that no vector load of a packed
    /// panel is split across two lines. The buffer comes from (and goes
    /// back to) this thread's spares: a fresh one for every MATMUL cost a
    /// page fault per 4 KiB (a sixth of the time at n = 256). Its contents
    /// are those of an earlier product: every packed value the
    /// micro-kernel's stored results depend on is written first; padding
    /// only meets rows and columns of C that are not stored.
    struct Aligned {
        buf: Vec<i32>,
        off: usize,
        len: usize,
    }

    thread_local! {
        static SPARES: std::cell::RefCell<Vec<Vec<i32>>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Spare buffers kept per thread, and the largest kept (4 MiB: a
    /// 1024 x 1024 operand packed).
    const SPARES_KEPT: usize = 2;
    const SPARE_MAX: usize = 1 << 20;

    impl Aligned {
        fn new(len: usize) -> Self {
            let mut buf = SPARES.with(|s| s.borrow_mut().pop()).unwrap_or_default();
            if buf.len() < len + 16 {
                buf.resize(len + 16, 0);
            }
            let off = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
            Aligned { buf, off, len }
        }

        fn get(&self) -> &[i32] {
            &self.buf[self.off..self.off + self.len]
        }

        fn get_mut(&mut self) -> &mut [i32] {
            &mut self.buf[self.off..self.off + self.len]
        }
    }

    impl Drop for Aligned {
        fn drop(&mut self) {
            if self.buf.len() <= SPARE_MAX {
                let buf = std::mem::take(&mut self.buf);
                SPARES.with(|s| {
                    let mut s = s.borrow_mut();
                    if s.len() < SPARES_KEPT {
                        s.push(buf);
                    }
                });
            }
        }
    }

    pub(super) struct PackedB {
        n: usize,
        k: usize,
        kp: usize,
        /// Panels of NR columns: `bpack[(jp * kp + q) * NR + jj]` holds the
        /// pair (2q, 2q + 1) of column jp * NR + jj (a last odd row pairs
        /// with 0; columns past n are left as they were, see [`Aligned`]).
        bpack: Aligned,
    }

    impl PackedB {
        /// Only called after AVX2 was detected.
        /// B is k x n, or n x k when `bt`, with rows `ldb` apart.
        pub(super) fn new(n: usize, k: usize, b: &[i8], ldb: usize, bt: bool) -> Self {
            let (rows, cols) = if bt { (n, k) } else { (k, n) };
            assert!(
                n > 0 && k > 0 && (rows == 1 || ldb >= cols) && b.len() >= (rows - 1) * ldb + cols
            );
            let kp = k.div_ceil(2);
            let mut bpack = Aligned::new(n.div_ceil(NR) * kp * NR);
            // SAFETY: the caller checked for AVX2 at run time.
            unsafe {
                if bt {
                    pack_b_columns(n, k, kp, b, ldb, bpack.get_mut());
                } else {
                    pack_b_rows(n, k, kp, b, ldb, bpack.get_mut());
                }
            }
            PackedB { n, k, kp, bpack }
        }

        /// `c[m,n] += a[m,k] * B` for m rows of A. Only called after AVX2
        /// was detected.
        /// Rows of A `lda` apart, rows of C `ldc` apart (each row at least
        /// k and n long); `overwrite`: `c = a * B` instead (C's old values
        /// are never read, which saves a pass zeroing it).
        pub(super) fn run(
            &self,
            a: &[i8],
            lda: usize,
            m: usize,
            c: &mut [i32],
            ldc: usize,
            overwrite: bool,
        ) {
            let (n, k, kp) = (self.n, self.k, self.kp);
            if m == 0 {
                return;
            }
            assert!(
                (m == 1 || (lda >= k && ldc >= n))
                    && a.len() >= (m - 1) * lda + k
                    && c.len() >= (m - 1) * ldc + n
            );
            // A sign-extended to i16 and cut into K blocks of KC pairs:
            // block kb holds every row's pairs k0..k0 + kc, rows `ldp` apart
            // (an odd number of cache lines, so the six rows the
            // micro-kernel reads do not crowd into the same cache sets),
            // a last odd column paired with 0, in whole panels of MR rows (the
            // rows past m left as they were, see [`Aligned`]). A
            // micro-kernel call then reads one compact region, not six
            // strided streams.
            let panels = m.div_ceil(MR);
            let ldp = (KC.min(kp).div_ceil(16) | 1) * 16;
            let block = panels * MR * ldp;
            let mut apack = Aligned::new(kp.div_ceil(KC) * block);
            for (i, row) in (0..m).map(|i| (i, &a[i * lda..i * lda + k])) {
                for (kb, src) in row.chunks(2 * KC).enumerate() {
                    let at = kb * block + i * ldp;
                    // SAFETY: the caller checked for AVX2 at run time.
                    unsafe { widen(src, &mut apack.get_mut()[at..at + src.len().div_ceil(2)]) };
                }
            }
            let (ap, bp) = (apack.get(), self.bpack.get());
            let cp = c.as_mut_ptr();
            for (kb, k0) in (0..kp).step_by(KC).enumerate() {
                let kc = KC.min(kp - k0);
                let ablock = &ap[kb * block..(kb + 1) * block];
                for ic in (0..panels).step_by(MC / MR) {
                    let ic1 = (ic + MC / MR).min(panels);
                    for jp in 0..n.div_ceil(NR) {
                        let bs = &bp[(jp * kp + k0) * NR..(jp * kp + k0 + kc) * NR];
                        let cols = NR.min(n - jp * NR);
                        for ip in ic..ic1 {
                            let asl = &ablock[ip * MR * ldp..(ip * MR + MR - 1) * ldp + kc];
                            let rows = MR.min(m - ip * MR);
                            // SAFETY: AVX2 was checked by the caller; `asl`
                            // holds MR rows ldp apart of kc pairs each, `bs`
                            // kc pairs of NR columns (both sliced above), and
                            // the C tile (rows x cols at row ip * MR, column
                            // jp * NR, rows ldc apart) lies inside `c`, which
                            // holds m rows of n, ldc apart (asserted above).
                            unsafe {
                                micro(
                                    kc,
                                    asl,
                                    ldp,
                                    bs,
                                    cp.add(ip * MR * ldc + jp * NR),
                                    ldc,
                                    (rows, cols),
                                    !(overwrite && kb == 0),
                                )
                            };
                        }
                    }
                }
            }
        }
    }

    /// Pair q of every column from rows 2q and 2q + 1 of a row-major K x N
    /// B: 16 columns at a time, interleaved bytewise and sign-extended.
    #[target_feature(enable = "avx2")]
    fn pack_b_rows(n: usize, k: usize, kp: usize, b: &[i8], ldb: usize, bp: &mut [i32]) {
        let full = n / NR;
        let zeros = [0i8; NR];
        for q in 0..kp {
            let r0 = &b[2 * q * ldb..2 * q * ldb + n];
            let r1 = if 2 * q + 1 < k {
                &b[(2 * q + 1) * ldb..(2 * q + 1) * ldb + n]
            } else {
                &[][..]
            };
            for jp in 0..full {
                let lo = &r0[jp * NR..(jp + 1) * NR];
                let hi = r1.get(jp * NR..(jp + 1) * NR).unwrap_or(&zeros);
                let dst = &mut bp[(jp * kp + q) * NR..(jp * kp + q + 1) * NR];
                // SAFETY: `lo` and `hi` hold 16 bytes, `dst` 16 i32 (two
                // 32-byte stores); loadu/storeu need no alignment.
                unsafe {
                    let x = _mm_loadu_si128(lo.as_ptr().cast());
                    let y = _mm_loadu_si128(hi.as_ptr().cast());
                    let p0 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x, y));
                    let p1 = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x, y));
                    _mm256_storeu_si256(dst.as_mut_ptr().cast(), p0);
                    _mm256_storeu_si256(dst[8..].as_mut_ptr().cast(), p1);
                }
            }
            if full * NR < n {
                let dst = &mut bp[(full * kp + q) * NR..(full * kp + q + 1) * NR];
                for (jj, j) in (full * NR..n).enumerate() {
                    dst[jj] = pair(r0[j], r1.get(j).copied().unwrap_or(0));
                }
            }
        }
    }

    /// Pairs of an N x K (transposed) B: column j is row j of `b`, its pairs
    /// are consecutive, sign-extended 16 bytes at a time and spread NR apart.
    #[target_feature(enable = "avx2")]
    fn pack_b_columns(n: usize, k: usize, kp: usize, b: &[i8], ldb: usize, bp: &mut [i32]) {
        let mut eight = [0i32; 8];
        for (j, col) in (0..n).map(|j| (j, &b[j * ldb..j * ldb + k])) {
            let dst = &mut bp[(j / NR) * kp * NR + j % NR..];
            let mut q = 0;
            while 2 * q + 16 <= k {
                // SAFETY: 16 bytes of `col` from 2q (checked by the loop
                // condition) and 8 i32 into `eight`.
                unsafe {
                    let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(col[2 * q..].as_ptr().cast()));
                    _mm256_storeu_si256(eight.as_mut_ptr().cast(), v);
                }
                for (t, &p) in eight.iter().enumerate() {
                    dst[(q + t) * NR] = p;
                }
                q += 8;
            }
            for q in q..kp {
                dst[q * NR] = pair(col[2 * q], col.get(2 * q + 1).copied().unwrap_or(0));
            }
        }
    }

    /// `src` sign-extended to i16 as pairs into `dst` (a last odd byte
    /// pairs with 0): 16 bytes at a time.
    #[target_feature(enable = "avx2")]
    fn widen(src: &[i8], dst: &mut [i32]) {
        assert_eq!(dst.len(), src.len().div_ceil(2));
        let mut p = 0;
        while p + 16 <= src.len() {
            // SAFETY: 16 bytes of `src` from p and 8 i32 of `dst` from p / 2
            // (p + 16 <= src.len(), and dst holds half of it rounded up).
            unsafe {
                let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(src[p..].as_ptr().cast()));
                _mm256_storeu_si256(dst[p / 2..p / 2 + 8].as_mut_ptr().cast(), v);
            }
            p += 16;
        }
        for q in p / 2..dst.len() {
            dst[q] = pair(src[2 * q], src.get(2 * q + 1).copied().unwrap_or(0));
        }
    }

    /// `C += A (MR rows lda apart, kc pairs) * B (kc pairs x NR columns)`,
    /// or `C = ...` unless `add`, of which the first `rows` x `cols` are
    /// stored: 12 accumulators, two B loads and six broadcasts per pair.
    ///
    /// # Safety
    /// AVX2 must be present; `c` must be valid for reading and writing
    /// `rows` rows of `cols` i32, `ldc` apart.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro(
        kc: usize,
        a: &[i32],
        lda: usize,
        b: &[i32],
        c: *mut i32,
        ldc: usize,
        (rows, cols): (usize, usize),
        add: bool,
    ) {
        assert!(kc > 0 && a.len() >= (MR - 1) * lda + kc && b.len() >= kc * NR);
        let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
        let mut acc = [[_mm256_setzero_si256(); NV]; MR];
        for _ in 0..kc {
            // `ap` advances by one pair and `bp` by NR i32 per pair, kc
            // times: row ii's pair is at ap + ii * lda, inside `a`, and the
            // NR columns at bp, inside `b` (asserted above). (No closures:
            // they would not inherit `avx2`.)
            let mut bv = [_mm256_setzero_si256(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                // SAFETY: as above; v < NV = NR / 8.
                *x = unsafe { _mm256_loadu_si256(bp.add(8 * v).cast()) };
            }
            for (ii, acc_row) in acc.iter_mut().enumerate() {
                // SAFETY: as above; ii < MR.
                let av = _mm256_set1_epi32(unsafe { *ap.add(ii * lda) });
                for (x, &bx) in acc_row.iter_mut().zip(&bv) {
                    *x = _mm256_add_epi32(*x, _mm256_madd_epi16(av, bx));
                }
            }
            // SAFETY: one past the last pair at most.
            unsafe {
                ap = ap.add(1);
                bp = bp.add(NR);
            }
        }
        if rows == MR && cols == NR {
            for (ii, acc_row) in acc.iter().enumerate() {
                for (v, &x) in acc_row.iter().enumerate() {
                    // SAFETY: a whole tile: row ii's 8 i32 from column 8v
                    // are inside C (the caller's contract).
                    unsafe {
                        let p = c.add(ii * ldc + 8 * v).cast::<__m256i>();
                        let sum = if add {
                            _mm256_add_epi32(_mm256_loadu_si256(p), x)
                        } else {
                            x
                        };
                        _mm256_storeu_si256(p, sum);
                    }
                }
            }
            return;
        }
        // An edge tile: through memory, whole rows of NR by vector.
        let mut out = [[0i32; NR]; MR];
        for (o, acc_row) in out.iter_mut().zip(&acc) {
            for (v, &x) in acc_row.iter().enumerate() {
                // SAFETY: `o` holds NR = 8 * NV i32; each store is 8.
                unsafe { _mm256_storeu_si256(o[8 * v..].as_mut_ptr().cast(), x) };
            }
        }
        for (ii, o) in out.iter().enumerate().take(rows) {
            if cols == NR {
                for v in 0..NV {
                    // SAFETY: row ii < rows has NR = cols i32 inside C (the
                    // caller's contract); `o` holds NR.
                    unsafe {
                        let p = c.add(ii * ldc + 8 * v).cast::<__m256i>();
                        let x = _mm256_loadu_si256(o[8 * v..].as_ptr().cast());
                        let sum = if add {
                            _mm256_add_epi32(_mm256_loadu_si256(p), x)
                        } else {
                            x
                        };
                        _mm256_storeu_si256(p, sum);
                    }
                }
            } else {
                for (jj, &v) in o.iter().enumerate().take(cols) {
                    // SAFETY: ii < rows, jj < cols (the caller's contract).
                    unsafe {
                        let p = c.add(ii * ldc + jj);
                        *p = if add { (*p).wrapping_add(v) } else { v };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[i8], b: &[i8]) -> Vec<i32> {
        (0..m * n)
            .map(|ij| {
                (0..k)
                    .map(|p| a[ij / n * k + p] as i32 * b[p * n + ij % n] as i32)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn int8_gemm_is_exact_beyond_one_chunk_and_at_the_extremes() {
        let (m, n, k) = (3, 5, 2500);
        let a: Vec<i8> = (0..m * k)
            .map(|i| if i % 3 == 0 { -128 } else { (i * 7) as i8 })
            .collect();
        let b: Vec<i8> = (0..k * n)
            .map(|i| if i % 2 == 0 { -128 } else { 127 })
            .collect();
        let mut c = vec![0i32; m * n];
        igemm(m, n, k, &a, &b, false, &mut c);
        assert_eq!(c, reference(m, n, k, &a, &b));
        let mut c = vec![0i32; m * n];
        igemm_via_f32(m, n, k, &a, &b, false, &mut c);
        assert_eq!(c, reference(m, n, k, &a, &b));
    }

    #[test]
    fn int8_gemm_handles_edge_blocks_and_transposed_b() {
        for (m, n, k) in [(1, 1, 1), (5, 7, 33), (9, 3, 64), (4, 4, 31)] {
            let a: Vec<i8> = (0..m * k)
                .map(|i| (i as i32 * 37 % 256 - 128) as i8)
                .collect();
            let b: Vec<i8> = (0..k * n)
                .map(|i| (i as i32 * 91 % 256 - 128) as i8)
                .collect();
            let want = reference(m, n, k, &a, &b);
            let mut bt = vec![0i8; n * k];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            let mut c = vec![0i32; m * n];
            igemm(m, n, k, &a, &bt, true, &mut c);
            assert_eq!(c, want, "{m}x{n}x{k} transposed");
            let mut c = vec![1i32; m * n];
            igemm(m, n, k, &a, &b, false, &mut c);
            assert_eq!(
                c,
                want.iter().map(|v| v + 1).collect::<Vec<_>>(),
                "{m}x{n}x{k} accumulate"
            );
        }
    }

    /// Every kernel this host has, against the scalar reference, on shapes
    /// with ragged edges (m not a multiple of 6 or 8, n of 16 or 32, odd k),
    /// the extremes -128 and 127, transposed B, accumulation and row blocks.
    #[test]
    fn every_int8_kernel_matches_the_scalar_reference() {
        let kernels = [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2, Int8Kernel::F32];
        println!("this host's int8 kernel: {}", int8_kernel().name());
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (m, n, k) in [
            (1, 1, 1),
            (7, 17, 3),
            (13, 33, 65),
            (6, 16, 2),
            (25, 40, 129),
            (3, 5, 2500),
        ] {
            let a: Vec<i8> = (0..m * k)
                .map(|i| if i % 11 == 0 { -128 } else { next() as i8 })
                .collect();
            let b: Vec<i8> = (0..k * n)
                .map(|i| if i % 13 == 0 { 127 } else { next() as i8 })
                .collect();
            let want = reference(m, n, k, &a, &b);
            let mut bt = vec![0i8; n * k];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            for kernel in kernels {
                for block in [1, 4, usize::MAX] {
                    let mut c = vec![7i32; m * n];
                    assert!(igemm_with(
                        kernel,
                        m,
                        n,
                        k,
                        &a,
                        &b,
                        false,
                        &mut c,
                        block,
                        &mut || true
                    ));
                    let acc: Vec<i32> = want.iter().map(|v| v.wrapping_add(7)).collect();
                    assert_eq!(c, acc, "{kernel:?} {m}x{n}x{k} block {block}");
                    let mut c = vec![0i32; m * n];
                    igemm_with(kernel, m, n, k, &a, &bt, true, &mut c, block, &mut || true);
                    assert_eq!(c, want, "{kernel:?} {m}x{n}x{k} transposed, block {block}");
                }
            }
        }
    }

    /// C + A * B by the definition: a triple loop in wrapping i32 (the
    /// hardware's accumulators), sharing nothing with the kernels. `b` is
    /// k x n, all dense.
    fn naive(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], c: &[i32]) -> Vec<i32> {
        let mut out = c.to_vec();
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let prod = a[i * k + p] as i32 * b[p * n + j] as i32;
                    out[i * n + j] = out[i * n + j].wrapping_add(prod);
                }
            }
        }
        out
    }

    fn transposed(k: usize, n: usize, b: &[i8]) -> Vec<i8> {
        let mut bt = vec![0i8; n * k];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        bt
    }

    /// Shapes off every block size of every kernel (the AVX2 kernel's 6
    /// rows, 16 columns, 96-row and 256-pair blocks; VNNI's 8 x 32 and K
    /// quads; the f32 path's 1024-deep chunks), k = 1, n = 1, m = 1, odd k,
    /// and operands at the extremes (-128 x -128 is the one product that
    /// needs 16 bits unsigned, and a pair of them sums to 2^15).
    #[test]
    fn every_int8_kernel_is_exact_on_edge_shapes_and_extremes() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let shapes = [
            (1, 1, 1),
            (1, 17, 1),
            (7, 1, 1),
            (1, 1, 513),
            (6, 16, 1),
            (5, 33, 2),
            (13, 1, 513),
            (7, 16, 512),
            (12, 32, 3),
            (97, 35, 517),
            (6, 48, 1030),
            (9, 20, 2049),
        ];
        type Fill = fn(usize, u64) -> i8;
        let fills: [(&str, Fill, Fill); 4] = [
            ("all -128", |_, _| -128, |_, _| -128),
            ("127 x -128", |_, _| 127, |_, _| -128),
            (
                "alternating extremes",
                |i, _| [-128, 127][i % 2],
                |i, _| [127, -128, -128][i % 3],
            ),
            ("random", |_, r| r as i8, |_, r| (r >> 8) as i8),
        ];
        for (m, n, k) in shapes {
            for (name, fa, fb) in fills {
                let a: Vec<i8> = (0..m * k).map(|i| fa(i, next())).collect();
                let b: Vec<i8> = (0..k * n).map(|i| fb(i, next())).collect();
                let c0: Vec<i32> = (0..m * n).map(|_| next() as i32).collect();
                let want = naive(m, n, k, &a, &b, &c0);
                let bt = transposed(k, n, &b);
                for kernel in [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2, Int8Kernel::F32] {
                    for (bm, t) in [(&b, false), (&bt, true)] {
                        for block in [1, 5, usize::MAX] {
                            let mut c = c0.clone();
                            assert!(igemm_with(
                                kernel,
                                m,
                                n,
                                k,
                                &a,
                                bm,
                                t,
                                &mut c,
                                block,
                                &mut || true
                            ));
                            assert!(
                                c == want,
                                "{kernel:?} {m}x{n}x{k} {name} transposed {t} block {block}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// 140,000 products of -128 x -128 sum to 2,293,760,000, past i32: the
    /// accumulators wrap to 2,293,760,000 - 2^32 like the hardware's.
    #[test]
    fn int8_accumulators_wrap_like_the_hardware() {
        let (m, n, k) = (2, 3, 140_000);
        let (a, b) = (vec![-128i8; m * k], vec![-128i8; k * n]);
        for kernel in [Int8Kernel::Avx512Vnni, Int8Kernel::Avx2, Int8Kernel::F32] {
            let mut c = vec![0i32; m * n];
            igemm_with(
                kernel,
                m,
                n,
                k,
                &a,
                &b,
                false,
                &mut c,
                usize::MAX,
                &mut || true,
            );
            assert_eq!(c, vec![-2_001_207_296; m * n], "{kernel:?}");
        }
    }

    /// The in-place GEMM (AVX2, and VNNI where the CPU has it) on a word
    /// array standing in for the SRAM:
    /// strided tiles (A at an odd byte offset), accumulate or not, B
    /// transposed or not, k = 0; C's rows get C + A * B and every other
    /// word (the gaps between C's rows included) stays as it was.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn int8_in_place_touches_only_c_and_is_exact() {
        assert!(
            std::arch::is_x86_feature_detected!("avx2"),
            "an x86-64 test host without AVX2"
        );
        let mut kernels = vec![Int8Kernel::Avx2];
        if cpu_int8_kernel() == Int8Kernel::Avx512Vnni {
            kernels.push(Int8Kernel::Avx512Vnni);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (m, n, k) in [(1, 1, 1), (7, 17, 33), (6, 16, 2), (13, 40, 515), (3, 5, 0)] {
            for bt in [false, true] {
                for accumulate in [false, true] {
                    let (lda, ldc) = (k + 5, n + 2);
                    let ldb = if bt { k + 3 } else { n + 3 };
                    let (brows, bcols) = if bt { (n, k) } else { (k, n) };
                    let a_at: usize = 4 * 3 + 1;
                    let b_at = a_at + m * lda + 7;
                    let c_at = (b_at + brows * ldb).div_ceil(4) + 1;
                    let sram: Vec<u32> = (0..c_at + m * ldc + 3).map(|_| next() as u32).collect();
                    let bytes: Vec<i8> = sram
                        .iter()
                        .flat_map(|w| w.to_le_bytes())
                        .map(|x| x as i8)
                        .collect();
                    let a: Vec<i8> = (0..m * k)
                        .map(|i| bytes[a_at + i / k * lda + i % k])
                        .collect();
                    let b: Vec<i8> = (0..k * n)
                        .map(|i| {
                            let (p, j) = (i / n, i % n);
                            let (r, c) = if bt { (j, p) } else { (p, j) };
                            bytes[b_at + r * ldb + c]
                        })
                        .collect();
                    assert!(b.len() == brows * bcols);
                    let c0: Vec<i32> = (0..m * n)
                        .map(|i| sram[c_at + i / n * ldc + i % n] as i32)
                        .collect();
                    let zeros = vec![0; m * n];
                    let want = naive(m, n, k, &a, &b, if accumulate { &c0 } else { &zeros });
                    let mut expect = sram.clone();
                    for (i, &v) in want.iter().enumerate() {
                        expect[c_at + i / n * ldc + i % n] = v as u32;
                    }
                    for (&kernel, block) in kernels
                        .iter()
                        .flat_map(|k| [(k, 1), (k, 4), (k, usize::MAX)])
                    {
                        let mut got = sram.clone();
                        assert!(igemm_simd_in_place(
                            kernel,
                            &mut got,
                            GemmShape { m, n, k },
                            (a_at, lda),
                            (b_at, ldb, bt),
                            (c_at, ldc),
                            accumulate,
                            block,
                            &mut || true,
                        ));
                        assert!(
                            got == expect,
                            "{kernel:?} {m}x{n}x{k} transposed {bt} accumulate {accumulate} block {block}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_poll_that_says_stop_stops_between_row_blocks() {
        let (m, n, k) = (10, 4, 4);
        let (a, b) = (vec![1i8; m * k], vec![1i8; k * n]);
        let mut c = vec![0i32; m * n];
        let mut polls = 0;
        let done = igemm_with(
            int8_kernel(),
            m,
            n,
            k,
            &a,
            &b,
            false,
            &mut c,
            3,
            &mut || {
                polls += 1;
                polls <= 2
            },
        );
        assert!(!done);
        // Two blocks of 3 rows ran, the rest did not.
        assert!(
            c[..6 * n].iter().all(|&v| v == 4) && c[6 * n..].iter().all(|&v| v == 0),
            "{c:?}"
        );
    }
}
