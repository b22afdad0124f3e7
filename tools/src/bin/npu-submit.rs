//! npu-submit: compile a kernel (libnpu's text form) or an ONNX model, run
//! it on the NPU, check it against the CPU reference, print timings; or
//! submit a raw command buffer with the buffers it uses.
//!
//! Exit status: 0 success, 1 the job failed (fault, timeout, mismatch),
//! 2 bad usage or input.

use npu::reference::TensorData;
use npu::runtime::{self, Session};
use npu_tools::onnx_model;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: npu-submit [OPTIONS] KERNEL.npu
       npu-submit [OPTIONS] MODEL.onnx
       npu-submit [OPTIONS] --raw CMDBUF.bin [--buffer SIZE[=FILE]]...

Compile KERNEL.npu (or import MODEL.onnx) for the NPU, run it, and check
every output against the CPU reference. A model node the NPU cannot run is
refused (exit status 2) with its name, op type and the reason. With --raw, submit a command buffer as it is (for example
one written by --dump, with --buffer for each line of its buffers.txt, in
order: buffers are placed in the order given, from the first NPU address of
a fresh file, so they get the addresses the dump was made with).

options:
  --backend accel|model  the onpu driver (default) or the in-process model
  --sram BYTES           SRAM of the model backend (default 1048576)
  --seed N               seed of the random inputs (default 1)
  --input NAME=FILE      data for input NAME: FILE.npy (numpy.save), else raw
                         little-endian bytes
  --shape NAME=D0,D1,..  (ONNX) the shape of an input with symbolic dimensions
  --cpu-fallback         (ONNX) run the nodes the NPU cannot, of ops the CPU
                         fallback has (Abs, Neg, Floor, Ceil, Round, Sin,
                         Cos), on the CPU instead of refusing the model;
                         names them
  --list                 (ONNX) list the model's inputs and outputs as declared
                         and as imported (dtype, shape, quantization); run
                         nothing (exit 2 if it does not import)
  --repeat N             run N times in one session (run i: random inputs of
                         seed + i), check each; print min/median/max times
  --disasm               print the command buffer
  --dump DIR             write DIR/cmdbuf.bin (as submitted), DIR/buffers.txt
                         (name, size, NPU address), each input and output as
                         DIR/NAME.bin (raw; characters other than A-Za-z0-9._-
                         in NAME become _); with --raw, DIR/bufferN.bin
  --timeout-ms N         per-job timeout given to the driver (0: default)
  --wait-ms N            give up waiting for a job after N ms (default 60000)
  --tolerance T          relative f32 tolerance (default 1e-4)
  --no-check             do not compare with the CPU reference
  --buffer SIZE[=FILE]   (--raw) a buffer of SIZE bytes, filled from FILE
";

struct Opts {
    kernel: Option<PathBuf>,
    raw: Option<PathBuf>,
    buffers: Vec<(u64, Option<PathBuf>)>,
    model: bool,
    sram: u32,
    seed: u64,
    inputs: Vec<(String, PathBuf)>,
    repeat: usize,
    disasm: bool,
    dump: Option<PathBuf>,
    timeout_ms: u32,
    wait_ms: Option<u64>,
    tolerance: f32,
    check: bool,
    shapes: Vec<(String, Vec<usize>)>,
    list: bool,
    cpu_fallback: bool,
}

/// A failure and how to exit.
enum Fail {
    Usage(String),
    Job(String),
}

fn parse_args() -> Result<Opts, Fail> {
    let mut o = Opts {
        kernel: None,
        raw: None,
        buffers: Vec::new(),
        model: false,
        sram: 1 << 20,
        seed: 1,
        inputs: Vec::new(),
        repeat: 1,
        disasm: false,
        dump: None,
        timeout_ms: 0,
        wait_ms: None,
        tolerance: 1e-4,
        check: true,
        shapes: Vec::new(),
        list: false,
        cpu_fallback: false,
    };
    let mut args = std::env::args().skip(1);
    let usage = |m: String| Fail::Usage(m);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, Fail> {
            v.parse()
                .map_err(|_| Fail::Usage(format!("{name}: `{v}` is not a valid number")))
        }
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--backend" => match val("--backend")?.as_str() {
                "accel" => o.model = false,
                "model" => o.model = true,
                other => {
                    return Err(usage(format!(
                        "--backend: `{other}` is neither accel nor model"
                    )))
                }
            },
            "--sram" => o.sram = num("--sram", val("--sram")?)?,
            "--seed" => o.seed = num("--seed", val("--seed")?)?,
            "--repeat" => o.repeat = num("--repeat", val("--repeat")?)?,
            "--timeout-ms" => o.timeout_ms = num("--timeout-ms", val("--timeout-ms")?)?,
            "--wait-ms" => o.wait_ms = Some(num("--wait-ms", val("--wait-ms")?)?),
            "--tolerance" => o.tolerance = num("--tolerance", val("--tolerance")?)?,
            "--disasm" => o.disasm = true,
            "--no-check" => o.check = false,
            "--list" => o.list = true,
            "--cpu-fallback" => o.cpu_fallback = true,
            "--shape" => {
                let v = val("--shape")?;
                let (n, dims) = v
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--shape `{v}`: want NAME=D0,D1,...")))?;
                let dims = dims
                    .split(',')
                    .map(|d| match d.trim().parse::<usize>() {
                        Ok(x) if x > 0 => Ok(x),
                        _ => Err(usage(format!("--shape `{v}`: `{d}` is not a dimension"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                o.shapes.push((n.to_string(), dims));
            }
            "--dump" => o.dump = Some(val("--dump")?.into()),
            "--raw" => o.raw = Some(val("--raw")?.into()),
            "--input" => {
                let v = val("--input")?;
                let (n, f) = v
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--input `{v}`: want NAME=FILE")))?;
                o.inputs.push((n.to_string(), f.into()));
            }
            "--buffer" => {
                let v = val("--buffer")?;
                let (size, file) = match v.split_once('=') {
                    Some((s, f)) => (s, Some(PathBuf::from(f))),
                    None => (v.as_str(), None),
                };
                o.buffers.push((num("--buffer", size.to_string())?, file));
            }
            s if s.starts_with('-') => return Err(usage(format!("unknown option {s}"))),
            _ if o.kernel.is_some() => {
                return Err(usage(format!("more than one kernel given (`{a}`)")))
            }
            _ => o.kernel = Some(a.into()),
        }
    }
    if o.repeat == 0 {
        return Err(usage("--repeat must be at least 1".into()));
    }
    if !o.buffers.is_empty() && o.raw.is_none() {
        return Err(usage("--buffer goes with --raw".into()));
    }
    match (&o.kernel, &o.raw) {
        (None, None) => Err(usage("no kernel given".into())),
        (Some(_), Some(_)) => Err(usage("give a kernel or --raw, not both".into())),
        _ => Ok(o),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Fail> {
    std::fs::read(path).map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))
}

fn write(path: &Path, data: &[u8]) -> Result<(), Fail> {
    std::fs::write(path, data).map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if times.len() == 1 {
        return format!("{:.1} us", us(times[0]));
    }
    format!(
        "min {:.1} us, median {:.1} us, max {:.1} us over {} runs",
        us(times[0]),
        us(times[times.len() / 2]),
        us(times[times.len() - 1]),
        times.len()
    )
}

/// Bad input exits 2; what went wrong on the device (or in the check) 1.
fn fail(e: runtime::Error) -> Fail {
    use runtime::Error::*;
    match e {
        Parse(_) | Compile(_) | Input { .. } | Request(_) => Fail::Usage(e.to_string()),
        _ => Fail::Job(e.to_string()),
    }
}

fn session(o: &Opts) -> Result<Session, Fail> {
    let mut s = if o.model {
        Session::model(o.sram)
    } else {
        Session::open().map_err(|e| Fail::Job(e.to_string()))?
    };
    s.timeout_ms = o.timeout_ms;
    if let Some(ms) = o.wait_ms {
        s.wait_timeout = Duration::from_millis(ms);
    }
    Ok(s)
}

fn run_kernel(o: &Opts, path: &Path) -> Result<(), Fail> {
    let is_onnx = path.extension().is_some_and(|e| e == "onnx");
    if (o.list || !o.shapes.is_empty()) && !is_onnx {
        return Err(Fail::Usage(
            "--list and --shape go with an ONNX model".into(),
        ));
    }
    // ONNX: import, then the same path as a kernel; names in files and
    // messages are the model's.
    let mut model = None;
    let graph = if is_onnx {
        let opts = npu_onnx::Options {
            input_shapes: o.shapes.iter().cloned().collect(),
            cpu_fallback: o.cpu_fallback,
        };
        let t = std::time::Instant::now();
        let loaded = npu_onnx::load(path, &opts);
        if o.list {
            // The file's own view first, so a model that does not import
            // (symbolic dimensions, a refused op) is still listed.
            let bytes = read(path)?;
            if let Ok((ins, outs)) = npu_onnx::declared_io(&bytes) {
                print!(
                    "{}: declared\n{}",
                    path.display(),
                    onnx_model::describe_declared(&ins, &outs)
                );
            }
        }
        let m = loaded.map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))?;
        print!(
            "{}: imported in {:.3} ms; {}",
            path.display(),
            t.elapsed().as_secs_f64() * 1e3,
            onnx_model::describe(&m)
        );
        if o.list {
            return Ok(());
        }
        if !m.segments.is_empty() {
            return run_partitioned(o, path, &m);
        }
        let g = m.graph.clone();
        model = Some(m);
        Some(g)
    } else {
        None
    };
    let mut session = session(o)?;
    let kernel = match graph {
        Some(g) => session.compile(g),
        None => {
            let src = std::fs::read_to_string(path)
                .map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))?;
            session.compile_text(&src)
        }
    }
    .map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))?;
    // IR value name -> the name the user knows (the ONNX one).
    let user_name = |ir: &str| -> String {
        model
            .as_ref()
            .and_then(|m| {
                m.inputs
                    .iter()
                    .chain(&m.outputs)
                    .find(|io| io.ir_name == ir)
            })
            .map_or(ir.to_string(), |io| io.name.clone())
    };
    let file_of = |ir: &str| format!("{}.bin", onnx_model::file_name(&user_name(ir)));
    let prog = &kernel.program;
    println!(
        "{}: {} instructions for {} KiB of SRAM on the {} backend, compiled in {:.3} ms",
        path.display(),
        prog.insns().len(),
        session.sram_size() / 1024,
        session.backend_name(),
        kernel.compile_time.as_secs_f64() * 1e3
    );
    if o.disasm {
        print!("{}", prog.disassemble());
    }
    let mut inputs = runtime::random_inputs(&kernel.graph, o.seed);
    for (name, file) in &o.inputs {
        if let Some(m) = &model {
            let io =
                m.inputs.iter().find(|io| io.name == *name).ok_or_else(|| {
                    Fail::Usage(format!("--input: the model has no input `{name}`"))
                })?;
            let data = onnx_model::read_input(io, file).map_err(Fail::Usage)?;
            inputs.insert(io.ir_name.clone(), data);
            continue;
        }
        let v = kernel
            .graph
            .inputs()
            .find(|&v| kernel.graph.node(v).name == *name)
            .ok_or_else(|| Fail::Usage(format!("--input: the kernel has no input `{name}`")))?;
        let ty = kernel.graph.ty(v);
        let bytes = read(file)?;
        if bytes.len() != ty.bytes() {
            return Err(Fail::Usage(format!(
                "--input {name}: {} has {} bytes, the input takes {} ({} x {})",
                file.display(),
                bytes.len(),
                ty.bytes(),
                ty.elems(),
                ty.dtype.name()
            )));
        }
        inputs.insert(name.clone(), TensorData::from_bytes(ty.dtype, &bytes));
    }
    let mut times = Vec::new();
    let mut last = None;
    for i in 0..o.repeat as u64 {
        // Each run its own data, so a buffer reused from the run before
        // (the session keeps them) cannot pass with stale contents.
        if i > 0 {
            let fresh = runtime::random_inputs(&kernel.graph, o.seed.wrapping_add(i));
            for (name, data) in fresh {
                if !o.inputs.iter().any(|(n, _)| *n == name) {
                    inputs.insert(name, data);
                }
            }
        }
        let run = session.run(&kernel, &inputs).map_err(fail)?;
        if o.check && i + 1 < o.repeat as u64 {
            runtime::check(&kernel.graph, &inputs, &run.outputs, o.tolerance)
                .map_err(|e| Fail::Job(format!("run {}: mismatch: {e}", i + 1)))?;
        }
        times.push(run.device_time);
        last = Some(run);
    }
    let run = last.ok_or_else(|| Fail::Job("no run".into()))?;
    println!(
        "device: {} modelled cycles; submit to completion {}",
        run.cycles,
        summary(&mut times)
    );
    let mut names: Vec<&String> = run.outputs.keys().collect();
    names.sort();
    for name in &names {
        let d = &run.outputs[*name];
        let head: Vec<String> = match d {
            TensorData::F32(v) => v.iter().take(10).map(|x| format!("{x:.4}")).collect(),
            TensorData::I8(v) => v.iter().take(10).map(|x| x.to_string()).collect(),
            TensorData::I32(v) => v.iter().take(10).map(|x| x.to_string()).collect(),
            TensorData::U8(v) => v.iter().take(10).map(|x| x.to_string()).collect(),
            TensorData::F16(v) => v
                .iter()
                .take(10)
                .map(|&x| format!("{:.4}", npu_isa::f16_to_f32(x)))
                .collect(),
            TensorData::Bf16(v) => v
                .iter()
                .take(10)
                .map(|&x| format!("{:.4}", npu_isa::bf16_to_f32(x)))
                .collect(),
        };
        println!(
            "{} ({} values): [{}{}]",
            user_name(name),
            d.len(),
            head.join(", "),
            if d.len() > 10 { ", ..." } else { "" }
        );
    }
    if let Some(dir) = &o.dump {
        std::fs::create_dir_all(dir).map_err(|e| Fail::Usage(format!("{}: {e}", dir.display())))?;
        let lines: Vec<String> = prog
            .buffers()
            .iter()
            .zip(&run.addrs)
            .map(|(b, a)| format!("{} {} {a:#x}", b.name, b.size.max(1)))
            .collect();
        write(
            &dir.join("buffers.txt"),
            (lines.join("\n") + "\n").as_bytes(),
        )?;
        for (name, data) in &inputs {
            write(&dir.join(file_of(name)), &data.to_bytes())?;
        }
        for name in &names {
            write(&dir.join(file_of(name)), &run.outputs[*name].to_bytes())?;
        }
        write(&dir.join("cmdbuf.bin"), &run.cmdbuf)?;
        println!("dumped to {}", dir.display());
    }
    if o.check {
        runtime::check(&kernel.graph, &inputs, &run.outputs, o.tolerance)
            .map_err(|e| Fail::Job(format!("mismatch: {e}")))?;
        println!("every output matches the CPU reference");
    }
    Ok(())
}

/// A model with nodes on the CPU (--cpu-fallback): its steps in order.
fn run_partitioned(o: &Opts, path: &Path, m: &npu_onnx::Model) -> Result<(), Fail> {
    for s in &m.segments {
        match s {
            npu_onnx::Segment::Npu(n) => println!(
                "  NPU: {} ops, {} inputs, {} outputs",
                n.graph.nodes().len(),
                n.inputs.len(),
                n.outputs.len()
            ),
            npu_onnx::Segment::Cpu(c) => {
                println!("  CPU fallback: node `{}` ({})", c.node, c.op)
            }
        }
    }
    let mut g = npu::Graph::new();
    for io in &m.inputs {
        g.input(&io.ir_name, io.ty.clone())
            .map_err(|e| Fail::Usage(e.to_string()))?;
    }
    let mut inputs = runtime::random_inputs(&g, o.seed);
    for (name, file) in &o.inputs {
        let io = m
            .inputs
            .iter()
            .find(|io| io.name == *name)
            .ok_or_else(|| Fail::Usage(format!("--input: the model has no input `{name}`")))?;
        inputs.insert(
            io.ir_name.clone(),
            onnx_model::read_input(io, file).map_err(Fail::Usage)?,
        );
    }
    let mut session = session(o)?;
    let outputs = npu_onnx::run_segments(
        &mut session,
        &m.segments,
        &m.inputs,
        &inputs,
        &m.outputs,
        o.check.then_some(o.tolerance),
    )
    .map_err(|e| Fail::Job(format!("{}: {e}", path.display())))?;
    for io in &m.outputs {
        let d = &outputs[&io.name];
        if let TensorData::F32(v) = d {
            let head: Vec<String> = v.iter().take(10).map(|x| format!("{x:.4}")).collect();
            println!(
                "{} ({} values): [{}{}]",
                io.name,
                v.len(),
                head.join(", "),
                if v.len() > 10 { ", ..." } else { "" }
            );
        }
    }
    if let Some(dir) = &o.dump {
        std::fs::create_dir_all(dir).map_err(|e| Fail::Usage(format!("{}: {e}", dir.display())))?;
        for io in m.inputs.iter() {
            let f = dir.join(format!("{}.bin", onnx_model::file_name(&io.name)));
            write(&f, &inputs[&io.ir_name].to_bytes())?;
        }
        for io in m.outputs.iter() {
            let f = dir.join(format!("{}.bin", onnx_model::file_name(&io.name)));
            write(&f, &outputs[&io.name].to_bytes())?;
        }
        println!("dumped to {}", dir.display());
    }
    if o.check {
        println!("every NPU step matches the CPU reference");
    }
    Ok(())
}

fn run_raw(o: &Opts, path: &Path) -> Result<(), Fail> {
    let cmd = read(path)?;
    if cmd.is_empty() || cmd.len() % npu::isa::INSN_SIZE != 0 {
        return Err(Fail::Usage(format!(
            "{}: {} bytes is not a whole number of {}-byte instructions",
            path.display(),
            cmd.len(),
            npu::isa::INSN_SIZE
        )));
    }
    let mut contents = Vec::new();
    for (size, file) in &o.buffers {
        let data = match file {
            Some(f) => read(f)?,
            None => Vec::new(),
        };
        if *size == 0 || data.len() as u64 > *size {
            let what = file.as_ref().map_or("nothing".to_string(), |f| {
                format!("{} ({} bytes)", f.display(), data.len())
            });
            return Err(Fail::Usage(format!(
                "--buffer {size}: a buffer needs at least 1 byte and room for {what}"
            )));
        }
        contents.push((*size, data));
    }
    if o.disasm {
        for (i, insn) in npu::isa::disassemble(&cmd).iter().enumerate() {
            println!("{:6}: {insn:?}", i * npu::isa::INSN_SIZE);
        }
    }
    let mut session = session(o)?;
    let buffers: Vec<(u64, &[u8])> = contents.iter().map(|(s, d)| (*s, d.as_slice())).collect();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..o.repeat {
        let e = session.run_raw(&cmd, &buffers).map_err(fail)?;
        times.push(e.device_time);
        last = Some(e);
    }
    let e = last.ok_or_else(|| Fail::Job("no run".into()))?;
    for (i, (a, (size, _))) in e.addrs.iter().zip(&contents).enumerate() {
        println!("buffer {i} ({size} bytes) at NPU address {a:#x}");
    }
    println!(
        "device: {} modelled cycles on the {} backend; submit to completion {}",
        e.cycles,
        session.backend_name(),
        summary(&mut times)
    );
    if let Some(dir) = &o.dump {
        std::fs::create_dir_all(dir).map_err(|e| Fail::Usage(format!("{}: {e}", dir.display())))?;
        for (i, b) in e.outputs.iter().enumerate() {
            write(&dir.join(format!("buffer{i}.bin")), b)?;
        }
        println!("dumped to {}", dir.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`npu-submit --disasm k.npu | head`), as
    // C tools do, instead of panicking on the failed print.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let result = parse_args().and_then(|o| match (&o.kernel, &o.raw) {
        (Some(k), _) => run_kernel(&o, k),
        (_, Some(r)) => run_raw(&o, r),
        _ => Err(Fail::Usage("no kernel given".into())),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("npu-submit: {m}");
            if m.contains("no kernel given") || m.starts_with("unknown option") {
                eprint!("{USAGE}");
            }
            ExitCode::from(2)
        }
        Err(Fail::Job(m)) => {
            eprintln!("npu-submit: {m}");
            ExitCode::from(1)
        }
    }
}
