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

/// `c[m,n] += a[m,k] * b` over i8 inputs with i32 accumulation (wrapping,
/// as the hardware's 32-bit accumulators do).
///
/// Runs on the f32 GEMM and is still exact: a product of two i8 is at most
/// 2^14 in magnitude, so every partial sum of up to 1024 products is an
/// integer below 2^24, which f32 represents exactly. K is cut into chunks of
/// 1024 whose exact sums are added in i32.
pub fn igemm(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], bt: bool, c: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        return vnni::igemm(m, n, k, a, b, bt, c);
    }
    igemm_via_f32(m, n, k, a, b, bt, c)
}

/// The portable path: exact through the f32 GEMM (see [`igemm`]).
pub fn igemm_via_f32(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], bt: bool, c: &mut [i32]) {
    const EXACT_K: usize = 1024;
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand sizes checked by caller"
    );
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let af: Vec<f32> = a[..m * k].iter().map(|&x| x as f32).collect();
    let bf: Vec<f32> = b[..k * n].iter().map(|&x| x as f32).collect();
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

    pub(super) fn igemm(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], bt: bool, c: &mut [i32]) {
        assert!(
            a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
            "gemm operand sizes checked by caller"
        );
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        let kq = k.div_ceil(4); // K quads
        let np = n.div_ceil(NR) * NR;
        let b_at = |p: usize, j: usize| if bt { b[j * k + p] } else { b[p * n + j] };
        // bpack[q][j] = b[4q..4q+4][j] as one 32-bit lane (zero past the
        // edges); colsum[j] = sum of column j, for the bias correction.
        let mut bpack = vec![0i32; kq * np];
        let mut colsum = vec![0i32; n];
        for q in 0..kq {
            for (j, cs) in colsum.iter_mut().enumerate() {
                let mut quad = [0u8; 4];
                for (t, byte) in quad.iter_mut().enumerate() {
                    let p = 4 * q + t;
                    if p < k {
                        let v = b_at(p, j);
                        *byte = v as u8;
                        *cs += v as i32;
                    }
                }
                bpack[q * np + j] = i32::from_le_bytes(quad);
            }
        }
        // apack[i][q] = a[i][4q..4q+4] + 128 as unsigned bytes (the padding
        // meets zeros of B, so its value does not matter).
        let mut apack = vec![0i32; m * kq];
        for i in 0..m {
            let row = &a[i * k..(i + 1) * k];
            for (q, four) in row.chunks(4).enumerate() {
                let mut quad = [0u8; 4];
                for (byte, &v) in quad.iter_mut().zip(four) {
                    *byte = (v as u8) ^ 0x80;
                }
                apack[i * kq + q] = i32::from_le_bytes(quad);
            }
        }
        // SAFETY: the caller checked for AVX-512 F, BW and VNNI at run time.
        unsafe { blocks(m, n, kq, np, &apack, &bpack, c) }
        for row in c[..m * n].chunks_exact_mut(n) {
            for (cv, &cs) in row.iter_mut().zip(&colsum) {
                *cv = cv.wrapping_sub(cs.wrapping_mul(128));
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn blocks(
        m: usize,
        n: usize,
        kq: usize,
        np: usize,
        apack: &[i32],
        bpack: &[i32],
        c: &mut [i32],
    ) {
        // Column panels outermost: one panel of B (kq x 32 lanes) stays in
        // cache while every block of rows streams past it.
        for j0 in (0..np).step_by(NR) {
            for i0 in (0..m).step_by(MR) {
                let mr = (m - i0).min(MR);
                let mut acc = [[_mm512_setzero_si512(); 2]; MR];
                for q in 0..kq {
                    let row = &bpack[q * np + j0..q * np + j0 + NR];
                    // SAFETY: `row` is 32 i32 in bounds (np is a multiple of
                    // NR); loadu has no alignment requirement.
                    let b0 = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
                    // SAFETY: as above, the second half of `row`.
                    let b1 = unsafe { _mm512_loadu_si512(row[16..].as_ptr().cast()) };
                    for (ii, acc_row) in acc.iter_mut().enumerate().take(mr) {
                        let av = _mm512_set1_epi32(apack[(i0 + ii) * kq + q]);
                        acc_row[0] = _mm512_dpbusd_epi32(acc_row[0], av, b0);
                        acc_row[1] = _mm512_dpbusd_epi32(acc_row[1], av, b1);
                    }
                }
                for (ii, acc_row) in acc.iter().enumerate().take(mr) {
                    let mut out = [0i32; NR];
                    // SAFETY: `out` holds 32 i32 = two 64-byte stores.
                    unsafe {
                        _mm512_storeu_si512(out.as_mut_ptr().cast(), acc_row[0]);
                        _mm512_storeu_si512(out[16..].as_mut_ptr().cast(), acc_row[1]);
                    }
                    let cols = (n - j0.min(n)).min(NR);
                    let crow = &mut c[(i0 + ii) * n + j0..(i0 + ii) * n + j0 + cols];
                    for (cv, &v) in crow.iter_mut().zip(&out) {
                        *cv = cv.wrapping_add(v);
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
}
