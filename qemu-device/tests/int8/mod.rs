//! int8 MATMUL jobs checked against a triple loop, shared by the test
//! binaries that each run them on one int8 kernel (the kernel is chosen
//! once per process).

use super::common::*;
use npu_isa::*;

/// C + A * B by the definition, in wrapping i32. `b` is k x n.
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

/// Strided tiles at odd offsets, B transposed or not, accumulate or not,
/// and C overlapping A (which takes the gathering path); operands full of
/// -128 and 127. C's rows must hold C + A * B (or A * B) and the gaps
/// between them what was loaded there.
pub fn check_int8_matmuls() {
    let mut rng = Rng(0x1234_5678);
    let cases = [
        (1, 1, 1, false),
        (7, 17, 33, false),
        (13, 40, 515, false),
        (6, 16, 2, false),
        (9, 33, 64, true),
    ];
    for (m, n, k, c_over_a) in cases {
        for bt in [false, true] {
            for accumulate in [false, true] {
                let (lda, ldc) = (k + 3, n + 1);
                let ldb = if bt { k + 2 } else { n + 5 };
                let (brows, bcols) = if bt { (n, k) } else { (k, n) };
                let a_at = 1usize;
                let b_at = a_at + (m - 1) * lda + k + 6;
                let c_at = if c_over_a {
                    0
                } else {
                    (b_at + (brows - 1) * ldb + bcols).div_ceil(4) * 4 + 4
                };
                let c_len = ((m - 1) * ldc + n) * 4;
                let image_len = (b_at + (brows - 1) * ldb + bcols).max(c_at + c_len);
                let image: Vec<u8> = (0..image_len.div_ceil(4) * 4)
                    .map(|i| match i % 7 {
                        0 => 0x80, // -128
                        1 => 0x7f, // 127
                        _ => rng.next() as u8,
                    })
                    .collect();
                let a: Vec<i8> = (0..m * k)
                    .map(|i| image[a_at + i / k * lda + i % k] as i8)
                    .collect();
                let b: Vec<i8> = (0..k * n)
                    .map(|i| {
                        let (p, j) = (i / n, i % n);
                        let (r, c) = if bt { (j, p) } else { (p, j) };
                        image[b_at + r * ldb + c] as i8
                    })
                    .collect();
                let word = |at: usize| {
                    i32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]])
                };
                let c0: Vec<i32> = (0..m * n)
                    .map(|i| word(c_at + (i / n * ldc + i % n) * 4))
                    .collect();
                let zeros = vec![0; m * n];
                let want = naive(m, n, k, &a, &b, if accumulate { &c0 } else { &zeros });
                // The C region as stored back: C's rows, the gaps between
                // them as they were loaded.
                let mut expect: Vec<i32> = (0..c_len / 4).map(|w| word(c_at + w * 4)).collect();
                for (i, &v) in want.iter().enumerate() {
                    expect[i / n * ldc + i % n] = v;
                }
                let mut dev = bench();
                let (done, out) = run_program(
                    &mut dev,
                    &image,
                    c_len,
                    &[
                        load(IN_VA, 0, image.len() as u32),
                        Insn::Matmul {
                            dtype: DType::I8,
                            accumulate,
                            transpose_b: bt,
                            m: m as u32,
                            n: n as u32,
                            k: k as u32,
                            a: tile(a_at as u32, lda as u32),
                            b: tile(b_at as u32, ldb as u32),
                            c: tile(c_at as u32, ldc as u32),
                        },
                        store(OUT_VA, c_at as u32, c_len as u32),
                    ],
                );
                assert_eq!(done.status, 0, "{m}x{n}x{k} bt {bt} acc {accumulate}");
                assert!(
                    bytes_i32(&out) == expect,
                    "{m}x{n}x{k} transposed {bt} accumulate {accumulate} C over A {c_over_a}"
                );
            }
        }
    }
}
