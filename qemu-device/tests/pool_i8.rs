//! POOL_I8 (opcode 0x35) against vectors computed by hand from the spec
//! (npu-hw.rst, "POOL_I8"): max with and without requantization, both
//! averages, padding excluded from windows and counts, ties rounded half
//! to even, saturation, and the encodings and geometries it refuses.

mod common;

use common::*;
use npu_isa::*;

fn geom(channels: u32, hw: [u32; 2], out: [u32; 2], k: u8, s: u8, p: u8) -> PoolGeom {
    PoolGeom {
        channels,
        in_h: hw[0],
        in_w: hw[1],
        out_h: out[0],
        out_w: out[1],
        kernel: [k, k],
        stride: [s, s],
        pad: [p, p],
    }
}

fn pool(op: PoolI8Op, geom: PoolGeom, dst: u32, q: Option<(f32, i8, f32, i8)>) -> Insn {
    let (scale_in, zp_in, scale_out, zp_out) = q.unwrap_or((0.0, 0, 0.0, 0));
    Insn::PoolI8 {
        op,
        geom,
        src: 0,
        dst,
        requant: q.is_some() && op == PoolI8Op::Max,
        zp_in,
        zp_out,
        scale_in,
        scale_out,
    }
}

/// Run POOL_I8s on `x` (loaded at SRAM 0), storing `n` bytes from SRAM 256.
fn run(x: &[i8], prog: &[Insn], n: u32) -> Vec<i8> {
    let mut b = bench();
    let bytes: Vec<u8> = x.iter().map(|&v| v as u8).collect();
    let mut p = vec![load(IN_VA, 0, bytes.len() as u32)];
    p.extend_from_slice(prog);
    p.push(store(OUT_VA, 256, n));
    let (c, out) = run_program(&mut b, &bytes, n as usize, &p);
    assert_eq!(c.status, 0, "{c:?}");
    out.into_iter().map(|v| v as i8).collect()
}

#[test]
fn max_ignores_padding_and_requantizes_half_to_even() {
    // Channel 0 by hand; channel 1 all -128, which padding must not beat.
    #[rustfmt::skip]
    let mut x: Vec<i8> = vec![
        50,  5,   7, -128,
         3, 20,  -2,    1,
         0, -5, 127,    6,
         8,  9,  10,   -1,
    ];
    x.extend([-128i8; 16]);
    // 3x3 windows, stride 2, padding 1: rows/cols {0,1} and {1,2,3}.
    let g = geom(2, [4, 4], [2, 2], 3, 2, 1);
    let out = run(
        &x,
        &[
            pool(PoolI8Op::Max, g, 256, None),
            // (m - 11) * 0.5 / 1.0, rounded half to even, - 3.
            pool(PoolI8Op::Max, g, 264, Some((0.5, 11, 1.0, -3))),
        ],
        16,
    );
    assert_eq!(&out[..8], &[50, 20, 20, 127, -128, -128, -128, -128]);
    // 19.5 -> 20, 4.5 -> 4, 58 -> 58, -69.5 -> -70 (half up would give
    // 20, 5, 58, -69).
    assert_eq!(&out[8..], &[17, 1, 1, 55, -73, -73, -73, -73]);
}

#[test]
fn average_sums_in_f32_divides_by_the_positions_inside_and_adds_the_zero_point_before_rounding() {
    // 3x3 input, 3x3 windows, stride 1, padding 1: counts 4, 6 and 9.
    let x: Vec<i8> = (1..=9).collect();
    let g = geom(1, [3, 3], [3, 3], 3, 1, 1);
    let out = run(
        &x,
        &[pool(PoolI8Op::Avg, g, 256, Some((1.0, 0, 1.0, 0)))],
        9,
    );
    // 12/4, 21/6 = 3.5 -> 4, 16/4, 27/6 = 4.5 -> 4, 45/9, 33/6 = 5.5 -> 6,
    // 24/4, 39/6 = 6.5 -> 6, 28/4.
    assert_eq!(out, vec![3, 4, 4, 4, 5, 6, 6, 6, 7]);

    // 2x2 windows, stride 2, scale 0.5 -> 1, zero points 0 in, 3 out:
    // sums 4, 12, 20 and -4 of q give 0.5, 1.5, 2.5, -0.5, then + 3:
    // 3.5 -> 4, 4.5 -> 4, 5.5 -> 6, 2.5 -> 2.
    #[rustfmt::skip]
    let x: Vec<i8> = vec![
        1, 1, 3, 3, 5, 5, -1, -1,
        1, 1, 3, 3, 5, 5, -1, -1,
    ];
    let g = geom(1, [2, 8], [1, 4], 2, 2, 0);
    let out = run(
        &x,
        &[pool(PoolI8Op::Avg, g, 256, Some((0.5, 0, 1.0, 3)))],
        4,
    );
    assert_eq!(out, vec![4, 4, 6, 2]);
}

#[test]
fn the_two_averages_differ_where_the_zero_point_is_added() {
    // One value 1 at scale 0.49999997 (the f32 below 0.5): y = 0.49999997.
    // S2 = 1 adds zp_out = 1 in f32 first: 1.49999997 rounds to 1.5, then
    // to 2. S2 = 2 rounds 0.49999997 to 0, then adds 1.
    let below_half = f32::from_bits(0x3eff_ffff);
    let g = geom(1, [1, 1], [1, 1], 1, 1, 0);
    let q = Some((below_half, 0, 1.0, 1));
    let out = run(
        &[1],
        &[
            pool(PoolI8Op::Avg, g, 256, q),
            pool(PoolI8Op::AvgInt, g, 257, q),
        ],
        2,
    );
    assert_eq!(out, vec![2, 1]);
}

#[test]
fn integer_average_scales_the_exact_sum_once_and_saturates() {
    // Two 2x2 planes pooled whole: zp_in -2, scale 0.25 / (0.5 * 4) =
    // 0.125, zp_out 7. Sums of q + 2: 10 + 8 = 18 -> 2.25 -> 2 -> 9; the
    // second plane's 4 * 129 = 516 -> 64.5 -> 64 (even) -> 71.
    let x: Vec<i8> = vec![1, 2, 3, 4, 127, 127, 127, 127];
    let g = geom(2, [2, 2], [1, 1], 2, 1, 0);
    let out = run(
        &x,
        &[pool(PoolI8Op::AvgInt, g, 256, Some((0.25, -2, 0.5, 7)))],
        2,
    );
    assert_eq!(out, vec![9, 71]);
    // zp_in -128: the 127s sum to 4 * 255 = 1020 -> 127.5 -> 128, + 7
    // saturates at 127; the first plane, 10 + 4 * 128 = 522 -> 65.25 -> 72.
    let out = run(
        &x,
        &[pool(PoolI8Op::AvgInt, g, 256, Some((0.25, -128, 0.5, 7)))],
        2,
    );
    assert_eq!(out, vec![72, 127]);
}

#[test]
fn bad_encodings_and_geometries_are_bad_operands() {
    let good = pool(
        PoolI8Op::Avg,
        geom(1, [2, 2], [1, 1], 2, 1, 0),
        256,
        Some((1.0, 0, 1.0, 0)),
    );
    let mut b = bench();
    let run_raw = |b: &mut npu_device::testbench::Bench, insn: [u8; INSN_SIZE]| {
        let mut cmd = insn.to_vec();
        cmd.extend_from_slice(&Insn::End.encode());
        b.run(0, CMD_VA, &cmd)
    };
    assert_eq!(run_raw(&mut b, good.encode()).status, 0);
    // A zero scale_out (w12), a NaN scale_in (w11), REQUANT on an average.
    let mut zero = good.encode();
    zero[48..52].fill(0);
    let mut nan = good.encode();
    nan[44..48].copy_from_slice(&f32::NAN.to_bits().to_le_bytes());
    let mut flag = good.encode();
    flag[2] = 1;
    for raw in [zero, nan, flag] {
        let c = run_raw(&mut b, raw);
        assert_eq!(c.fault(), Some(Fault::BadOperand), "{c:?}");
    }
    // An output size the geometry does not give, and padding as large as
    // the window.
    for g in [
        geom(1, [2, 2], [2, 2], 2, 1, 0),
        geom(1, [2, 2], [3, 3], 2, 1, 2),
    ] {
        let Insn::PoolI8 {
            op,
            src,
            dst,
            requant,
            zp_in,
            zp_out,
            scale_in,
            scale_out,
            ..
        } = good
        else {
            unreachable!()
        };
        let insn = Insn::PoolI8 {
            op,
            geom: g,
            src,
            dst,
            requant,
            zp_in,
            zp_out,
            scale_in,
            scale_out,
        };
        let c = run_raw(&mut b, insn.encode());
        assert_eq!(c.fault(), Some(Fault::BadOperand), "{g:?}");
    }
    // Planes past the end of the 256 KiB SRAM.
    let Insn::PoolI8 {
        op,
        geom: g,
        src,
        requant,
        zp_in,
        zp_out,
        scale_in,
        scale_out,
        ..
    } = good
    else {
        unreachable!()
    };
    let insn = Insn::PoolI8 {
        op,
        geom: g,
        src,
        dst: 256 * 1024,
        requant,
        zp_in,
        zp_out,
        scale_in,
        scale_out,
    };
    let c = run_raw(&mut b, insn.encode());
    assert_eq!(c.fault(), Some(Fault::SramRange));
}
