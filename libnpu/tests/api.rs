//! Runtime API v1 (npu::api) on the device model: models compiled once
//! with resident constants, independent requests from several threads,
//! fences, compiled-model files, errors with status and fault. Results are
//! checked against sums computed here in f64, not libnpu's reference.

use npu::api::{BackendKind, CompiledModel, Npu, Status};
use npu::ir::Op;
use npu::{DType, Graph, Quant, TensorData, TensorType};

const M: usize = 4;
const K: usize = 32;
const N: usize = 8;

fn weights() -> (Vec<f32>, Vec<f32>) {
    let w = (0..K * N)
        .map(|i| ((i * 7) % 11) as f32 / 8.0 - 0.6)
        .collect();
    let b = (0..N).map(|j| j as f32 / 4.0 - 1.0).collect();
    (w, b)
}

/// y = x @ w + b with w and b constants of the model.
fn gemm_model(npu: &Npu) -> CompiledModel {
    let (w, b) = weights();
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, &[M, K])).unwrap();
    let wv = g
        .constant(
            "w",
            TensorType::new(DType::F32, &[K, N]),
            TensorData::F32(w),
        )
        .unwrap();
    let bv = g
        .constant("b", TensorType::new(DType::F32, &[N]), TensorData::F32(b))
        .unwrap();
    let y = g
        .add(
            "y",
            Op::Gemm {
                a: x,
                b: wv,
                bias: Some(bv),
                trans_a: false,
                trans_b: false,
            },
            None,
        )
        .unwrap();
    g.output(y).unwrap();
    npu.load_graph(g).expect("compile")
}

fn input(seed: usize) -> Vec<f32> {
    (0..M * K)
        .map(|i| ((i * 13 + seed * 5) % 19) as f32 / 9.0 - 1.0)
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Compare with x @ w + b summed in f64.
fn assert_gemm(x: &[f32], y: &[f32]) {
    let (w, b) = weights();
    for i in 0..M {
        for j in 0..N {
            let want = (0..K).fold(f64::from(b[j]), |acc, k| {
                acc + f64::from(x[i * K + k]) * f64::from(w[k * N + j])
            });
            let got = f64::from(y[i * N + j]);
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "y[{i}][{j}] = {got}, want {want}"
            );
        }
    }
}

#[test]
fn constants_go_up_once_and_requests_keep_their_own_buffers() {
    let npu = Npu::model(64 * 1024).unwrap();
    assert_eq!(npu.info().backend, BackendKind::Model);
    let model = gemm_model(&npu);
    let constants = model.program().constants().len() as u64;
    assert!(constants >= ((K * N + N) * 4) as u64, "{constants}");
    let x_bytes = (M * K * 4) as u64;
    let (r1, r2) = (model.request(), model.request());
    let (x1, x2) = (input(1), input(2));
    r1.set_input("x", &bytes(&x1)).unwrap();
    r2.set_input("x", &bytes(&x2)).unwrap();
    let s1 = r1.run().unwrap();
    assert_eq!(
        s1.uploaded,
        x_bytes + constants,
        "the first run uploads the constants"
    );
    let s2 = r2.run().unwrap();
    assert_eq!(s2.uploaded, x_bytes, "the constants stayed resident");
    assert_eq!(r1.run().unwrap().uploaded, x_bytes);
    // Another model in between does not push this one's constants out.
    let other = gemm_model(&npu);
    let r3 = other.request();
    r3.set_input("x", &bytes(&x1)).unwrap();
    assert_eq!(r3.run().unwrap().uploaded, x_bytes + constants);
    assert_eq!(r2.run().unwrap().uploaded, x_bytes);
    assert_gemm(&x1, &floats(&r1.output("y").unwrap()));
    assert_gemm(&x2, &floats(&r2.output("y").unwrap()));
    assert_gemm(&x1, &floats(&r3.output("y").unwrap()));
}

#[test]
fn requests_of_one_model_run_from_several_threads() {
    let npu = Npu::model(64 * 1024).unwrap();
    let model = gemm_model(&npu);
    std::thread::scope(|s| {
        for t in 0..3 {
            let model = model.clone();
            s.spawn(move || {
                let r = model.request();
                for run in 0..4 {
                    let x = input(t * 10 + run);
                    r.set_input("x", &bytes(&x)).unwrap();
                    r.run().unwrap();
                    assert_gemm(&x, &floats(&r.output("y").unwrap()));
                }
            });
        }
    });
}

#[test]
fn caller_buffers_and_fences() {
    let npu = Npu::model(64 * 1024).unwrap();
    let model = gemm_model(&npu);
    // The request-free form: the caller's slices in and out.
    let x = input(4);
    let mut y = vec![0u8; M * N * 4];
    model
        .run_with(&[("x", &bytes(&x))], &mut [("y", &mut y)])
        .unwrap();
    assert_gemm(&x, &floats(&y));
    let e = model
        .run_with(&[("x", &[0u8; 3])], &mut [])
        .expect_err("short input");
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("is 512 bytes, not 3"), "{e}");

    // Bound memory and an asynchronous run, then one waiting for it.
    let (xa, xb) = (bytes(&input(5)), bytes(&input(6)));
    let mut ya = vec![0u8; M * N * 4];
    let (ra, rb) = (model.request(), model.request());
    // SAFETY: xa and ya outlive the runs (waited for below) and are not
    // touched until then.
    unsafe {
        ra.bind_input("x", xa.as_ptr(), xa.len()).unwrap();
        ra.bind_output("y", ya.as_mut_ptr(), ya.len()).unwrap();
    }
    rb.set_input("x", &xb).unwrap();
    let fa = ra.start(&[]).unwrap();
    let fb = rb.start(std::slice::from_ref(&fa)).unwrap();
    let sb = fb.wait(None).unwrap();
    assert!(fa.is_signaled(), "b waited for a");
    assert_eq!(sb.uploaded, xb.len() as u64);
    fa.wait(Some(std::time::Duration::ZERO)).unwrap();
    // The device model has no kernel fences to export.
    let e = fa
        .export_sync_file()
        .expect_err("no sync_file on the model");
    assert_eq!(e.status, Status::Unsupported, "{e}");
    ra.wait_idle();
    assert_gemm(&input(5), &floats(&ya));
    assert_gemm(&input(6), &floats(&rb.output("y").unwrap()));
    let e = ra.output("y").expect_err("bound");
    assert!(e.message.contains("bound to the caller's memory"), "{e}");

    // A run whose input fence failed fails with that error, without running.
    let bad = model.request().start(&[]).unwrap();
    let e = bad.wait(None).expect_err("no inputs");
    assert_eq!(e.status, Status::InvalidArgument);
    let after = rb
        .start(&[bad])
        .unwrap()
        .wait(None)
        .expect_err("after a failure");
    assert_eq!(after.status, Status::InvalidArgument);
    assert!(
        after.message.contains("a fence this run waited for failed"),
        "{after}"
    );
}

#[test]
fn inputs_and_outputs_list_type_shape_and_quantization() {
    let npu = Npu::model(64 * 1024).unwrap();
    let m = npu
        .load_text(
            "input x: i8[4,64] q(scale=0.05, zp=0)\n\
             input w: i8[64,16] q(scale=0.02, zp=0)\n\
             input b: i32[16]\n\
             y: i8 q(scale=0.1, zp=-3) = gemm(x, w, bias=b) |> relu\n\
             output y\n",
        )
        .unwrap();
    let names: Vec<&str> = m.inputs().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["x", "w", "b"]);
    assert_eq!(m.inputs()[2].ty, TensorType::new(DType::I32, &[16]));
    let y = &m.outputs()[0];
    assert_eq!(y.name, "y");
    assert_eq!(
        y.ty,
        TensorType::quantized(
            &[4, 16],
            Quant::PerTensor {
                scale: 0.1,
                zero_point: -3
            }
        )
    );
}

#[test]
fn a_compiled_model_file_loads_without_compiling_and_gives_the_same_results() {
    let npu = Npu::model(64 * 1024).unwrap();
    let model = gemm_model(&npu);
    let dir = std::env::temp_dir().join(format!("npu-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gemm.npuc");
    model.save(&path).unwrap();
    let loaded = npu.load_file(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        loaded.graph().is_none(),
        "read compiled, not compiled again"
    );
    assert_eq!(loaded.inputs(), model.inputs());
    assert_eq!(loaded.outputs(), model.outputs());
    assert_eq!(loaded.program().insns(), model.program().insns());
    let x = bytes(&input(8));
    let run = |m: &CompiledModel| {
        let r = m.request();
        r.set_input("x", &x).unwrap();
        r.run().unwrap();
        r.output("y").unwrap()
    };
    assert_eq!(run(&loaded), run(&model), "bit for bit");
    // It was tiled for 64 KiB: a device with less SRAM refuses it.
    let small = Npu::model(16 * 1024).unwrap();
    let e = small
        .load_compiled(&model.to_bytes())
        .expect_err("too small");
    assert_eq!(e.status, Status::Unsupported);
    // The text form still loads through the same call.
    let text = dir.with_extension("npu");
    std::fs::write(&text, "input x: f32[8]\ny = relu(x)\noutput y\n").unwrap();
    let m = npu.load_file(&text);
    let _ = std::fs::remove_file(&text);
    assert_eq!(m.unwrap().outputs()[0].name, "y");
}

#[test]
fn damaged_compiled_model_files_are_errors_not_panics() {
    let npu = Npu::model(64 * 1024).unwrap();
    let good = gemm_model(&npu).to_bytes();
    for n in 0..good.len() {
        let e = npu
            .load_compiled(&good[..n])
            .expect_err("a truncated file loads");
        assert_eq!(e.status, Status::Parse, "{n}: {e}");
    }
    // Every byte flipped: an error, or a model that runs or fails cleanly.
    let x = bytes(&input(1));
    let mut ran = 0;
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xa5;
        if let Ok(m) = npu.load_compiled(&bad) {
            if ran < 40 {
                ran += 1;
                let r = m.request();
                if r.set_input("x", &x).is_ok() {
                    let _ = r.run();
                }
            }
        }
    }
    let mut extra = good.clone();
    extra.push(0);
    let e = npu.load_compiled(&extra).expect_err("trailing bytes");
    assert!(e.message.contains("after the end"), "{e}");
}

#[test]
fn errors_carry_a_status_and_the_device_fault() {
    let e = Npu::model(1024).expect_err("too small");
    assert_eq!(e.status, Status::InvalidArgument);
    let npu = Npu::model(64 * 1024).unwrap();
    let e = npu
        .load_text("input x: f32[4]\ny = nope(x)\noutput y\n")
        .err()
        .unwrap();
    assert_eq!(e.status, Status::Parse);
    assert!(e.message.starts_with("parse error at 2:"), "{e}");
    // An undefined opcode in the second instruction: the address is its
    // command buffer offset.
    let mut cmd = vec![0u8; 128];
    cmd[64] = 0xee;
    let e = npu.run_raw(&cmd, &[]).expect_err("bad opcode");
    assert_eq!(e.status, Status::JobFault);
    let f = e.fault.expect("a fault");
    assert_eq!(
        (f.kind(), f.address),
        (Some(npu::isa::Fault::BadOpcode), 64)
    );
    // A load from an unmapped address: the address is the NPU address.
    let load = npu::isa::Insn::DmaLoad {
        va: 0x4000_0000,
        sram: 0,
        mem: npu::isa::Strided::contiguous(64),
        sram_layout: npu::isa::Strided::contiguous(64),
    };
    let cmd = [load.encode(), npu::isa::Insn::End.encode()].concat();
    let f = npu.run_raw(&cmd, &[]).expect_err("unmapped").fault.unwrap();
    assert_eq!(
        (f.kind(), f.address),
        (Some(npu::isa::Fault::MmuUnmapped), 0x4000_0000)
    );
    // A file that is not an accel node.
    let null = std::fs::File::open("/dev/null").unwrap();
    let e = Npu::open_fd(null.into()).expect_err("not an NPU");
    assert_eq!(e.status, Status::Device);
    assert!(e.message.contains("/dev/null"), "{e}");
}

#[test]
fn a_run_waits_for_its_input_sync_files() {
    use std::io::Write;
    let npu = Npu::model(64 * 1024).unwrap();
    let model = gemm_model(&npu);
    let r = model.request();
    let x = input(9);
    r.set_input("x", &bytes(&x)).unwrap();
    // On the device model any descriptor that polls readable once
    // signalled will do: a socket, readable once written.
    let (mut signal, fence_fd) = std::os::unix::net::UnixStream::pair().unwrap();
    let f = r.start_after(&[], vec![fence_fd.into()]).unwrap();
    // Not signalled, so the run cannot have ended.
    let e = f
        .wait(Some(std::time::Duration::ZERO))
        .expect_err("ran early");
    assert_eq!(e.status, Status::Timeout);
    assert!(!f.is_signaled());
    // Other runs on the device go on meanwhile.
    let other = model.request();
    other.set_input("x", &bytes(&x)).unwrap();
    other.run().unwrap();
    signal.write_all(b"!").unwrap();
    f.wait(None).unwrap();
    assert_gemm(&x, &floats(&r.output("y").unwrap()));
}

#[test]
fn the_device_model_copies_bound_buffers_and_has_no_dma_bufs() {
    let npu = Npu::model(64 * 1024).unwrap();
    let model = gemm_model(&npu);
    let r = model.request();
    let (x_bytes, y_bytes) = ((M * K * 4) as u64, (M * N * 4) as u64);
    // Every dma-buf call: a clear Unsupported, whatever the descriptor.
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let fd = std::os::fd::AsFd::as_fd(&devnull);
    let errors = [
        r.export_input_dmabuf("x").map(drop),
        r.export_output_dmabuf("y").map(drop),
        r.bind_input_dmabuf("x", fd),
        r.bind_output_dmabuf("y", fd),
    ];
    for e in errors {
        let e = e.expect_err("no dma-bufs on the model");
        assert_eq!(e.status, Status::Unsupported, "{e}");
        assert!(e.message.contains("not supported on this backend"), "{e}");
    }
    // Names are checked first, as for every call.
    let e = r.export_input_dmabuf("y").expect_err("y is an output");
    assert_eq!(e.status, Status::NotFound, "{e}");
    let e = r.bind_output_dmabuf("x", fd).expect_err("x is an input");
    assert_eq!(e.status, Status::NotFound, "{e}");
    let e = r.is_zero_copy("z").expect_err("no such tensor");
    assert_eq!(e.status, Status::NotFound, "{e}");
    assert!(e.message.contains("no input or output `z`"), "{e}");

    // Bound memory is copied at each run here: the device model has no
    // buffer objects. The second run reads the memory as it is then.
    let mut x = bytes(&input(7));
    let mut y = vec![0u8; M * N * 4];
    // SAFETY: x and y outlive the runs and are only touched between them.
    unsafe {
        r.bind_input("x", x.as_ptr(), x.len()).unwrap();
        r.bind_output("y", y.as_mut_ptr(), y.len()).unwrap();
    }
    assert!(!r.is_zero_copy("x").unwrap(), "no run yet");
    let first = r.run().unwrap();
    assert_gemm(&input(7), &floats(&y));
    assert!(first.uploaded >= x_bytes);
    assert_eq!(first.downloaded, y_bytes, "the output was read back");
    x.copy_from_slice(&bytes(&input(8)));
    let s = r.run().unwrap();
    assert_gemm(&input(8), &floats(&y));
    assert_eq!((s.uploaded, s.downloaded), (x_bytes, y_bytes));
    for name in ["x", "y"] {
        assert!(!r.is_zero_copy(name).unwrap(), "{name}");
        let why = r.copy_reason(name).unwrap().expect("a reason");
        assert!(why.contains("device model"), "{name}: {why}");
    }
    // Set again: the request's own bytes, nothing to say about copies.
    r.set_input("x", &bytes(&input(9))).unwrap();
    r.run().unwrap();
    assert_eq!(r.copy_reason("x").unwrap(), None);
    assert_gemm(&input(9), &floats(&y));
}

/// f16 and bf16 inputs and outputs through the runtime API: the caller's
/// buffers hold 2-byte elements (converted on the device), `TensorInfo`
/// says f16 / bf16 with 2-byte sizes, and a compiled model file keeps them.
/// Values are exact in both types, so the results are known by hand.
#[test]
fn f16_and_bf16_inputs_and_outputs_are_16_bit_and_survive_a_model_file() {
    let npu = Npu::model(64 * 1024).unwrap();
    let model = npu
        .load_text(
            "input x: f16[2,128]\n\
             input b: bf16[128]\n\
             xf = cast(x, to=f32)\n\
             bf = cast(b, to=f32)\n\
             s = add(xf, bf)\n\
             y = cast(s, to=bf16)\n\
             z = cast(s, to=f16)\n\
             output y, z\n",
        )
        .unwrap();
    let dtypes = |t: &[npu::api::TensorInfo]| {
        t.iter()
            .map(|t| (t.ty.dtype, t.ty.bytes()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        dtypes(model.inputs()),
        [(npu::DType::F16, 512), (npu::DType::Bf16, 256)]
    );
    assert_eq!(
        dtypes(model.outputs()),
        [(npu::DType::Bf16, 512), (npu::DType::F16, 512)]
    );
    let loaded = npu.load_compiled(&model.to_bytes()).unwrap();
    assert_eq!(loaded.inputs(), model.inputs());
    assert_eq!(loaded.outputs(), model.outputs());
    // x = i / 4 - 32 (exact in f16), b = 1 (bf16 0x3f80): s = x + 1, exact
    // in both 16-bit types (at most 9 significant bits).
    let le = |v: &[u16]| v.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<u8>>();
    let x: Vec<u16> = (0..256)
        .map(|i| half::f16::from_f32(i as f32 / 4.0 - 32.0).to_bits())
        .collect();
    let s: Vec<f32> = (0..256).map(|i| i as f32 / 4.0 - 31.0).collect();
    let want_y: Vec<u16> = s
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let want_z: Vec<u16> = s
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    for m in [&model, &loaded] {
        let r = m.request();
        r.set_input("x", &le(&x)).unwrap();
        r.set_input("b", &le(&[0x3f80; 128])).unwrap();
        r.run().unwrap();
        assert_eq!(r.output("y").unwrap(), le(&want_y));
        assert_eq!(r.output("z").unwrap(), le(&want_z));
    }
}

/// uint8 inputs and outputs through the runtime API: the caller's buffers
/// hold uint8 bytes (converted on the device), `TensorInfo` says u8 with
/// the uint8 zero point, and a compiled model file keeps both.
#[test]
fn uint8_inputs_and_outputs_are_u8_bytes_and_survive_a_model_file() {
    let npu = Npu::model(64 * 1024).unwrap();
    let model = npu
        .load_text(
            "input x: u8[2,128] q(scale=0.5, zp=200)\n\
             y = sign_flip(x) |> relu |> sign_flip\n\
             output y\n",
        )
        .unwrap();
    let x = &model.inputs()[0];
    assert_eq!((x.ty.dtype, x.ty.zero_point_value()), (npu::DType::U8, 200));
    assert_eq!(model.outputs()[0].ty.dtype, npu::DType::U8);
    let loaded = npu.load_compiled(&model.to_bytes()).unwrap();
    assert_eq!(loaded.inputs(), model.inputs());
    assert_eq!(loaded.outputs(), model.outputs());
    let bytes: Vec<u8> = (0..256).map(|i| i as u8).collect();
    for m in [&model, &loaded] {
        let r = m.request();
        r.set_input("x", &bytes).unwrap();
        r.run().unwrap();
        let want: Vec<u8> = bytes.iter().map(|&b| b.max(200)).collect();
        assert_eq!(r.output("y").unwrap(), want);
    }
}
