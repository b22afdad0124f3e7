//! Host-speed matrix multiply for the compute engine.

/// `c[m,n] += a[m,k] * b` where b is `[k,n]`, or `[n,k]` when `bt`.
/// All operands are dense row-major.
pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], bt: bool, c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm operand sizes checked by caller");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let (rsb, csb) = if bt { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the pointers come from slices at least as long as the strided
    // extents the strides describe (asserted above), and `c` does not alias
    // `a` or `b` (it is a distinct mutable slice).
    unsafe {
        matrixmultiply::sgemm(
            m, k, n, 1.0, a.as_ptr(), k as isize, 1, b.as_ptr(), rsb, csb, 1.0, c.as_mut_ptr(), n as isize, 1,
        );
    }
}

/// `c[m,n] += a[m,k] * b` over i8 inputs with i32 accumulation (wrapping,
/// as the hardware's 32-bit accumulators do).
pub fn igemm(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], bt: bool, c: &mut [i32]) {
    // Work on a transposed B so the inner loop is a contiguous dot product
    // the compiler vectorises (widening multiply-adds).
    let owned;
    let b_nk: &[i8] = if bt {
        b
    } else {
        let mut t = vec![0i8; n * k];
        for p in 0..k {
            for j in 0..n {
                t[j * k + p] = b[p * n + j];
            }
        }
        owned = t;
        &owned
    };
    for i in 0..m {
        let ar = &a[i * k..(i + 1) * k];
        for j in 0..n {
            let br = &b_nk[j * k..(j + 1) * k];
            c[i * n + j] = c[i * n + j].wrapping_add(dot_i8(ar, br));
        }
    }
}

fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    // Accumulate in chunks of i16 products summed into i32 lanes.
    let mut acc = [0i32; 16];
    let chunks = a.len() / 16;
    for c in 0..chunks {
        let (x, y) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for l in 0..16 {
            acc[l] += x[l] as i16 as i32 * y[l] as i16 as i32;
        }
    }
    let mut s: i32 = acc.iter().fold(0i32, |s, &v| s.wrapping_add(v));
    for i in chunks * 16..a.len() {
        s = s.wrapping_add(a[i] as i32 * b[i] as i32);
    }
    s
}
