//! `npu`: the NPU from Python, with onnxruntime's `InferenceSession` API
//! (Documentation/userspace/python.rst). An ONNX model is imported by
//! npu-onnx, compiled once by libnpu (`npu::api`), and every `run` is a new
//! `InferRequest` on it, so sessions can be shared between threads; the GIL
//! is released while a run is on the device.

use npu::api::{self, CompiledModel, Npu, Status};
use npu::DType;
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::HashMap;
use std::path::PathBuf;

create_exception!(
    npu,
    NpuError,
    PyException,
    "A libnpu error: `status` (the C enum's name, e.g. NPU_ERROR_INVALID_ARGUMENT), \
     `code` (its number), `message`, and for a job that faulted `fault_code` and \
     `fault_address` (None otherwise)."
);

/// The device model's SRAM when `backend="model"` (what the tests and
/// `npu-submit --backend model` use).
const MODEL_SRAM: u32 = 1 << 20;

fn npu_error(status: Status, message: &str, fault: Option<api::JobFault>) -> PyErr {
    Python::attach(|py| {
        let err = NpuError::new_err(format!("{}: {message}", status.name()));
        let v = err.value(py);
        // Setting attributes on a fresh exception object cannot fail short
        // of running out of memory; the error is still raised then.
        let _ = v.setattr("status", status.name());
        let _ = v.setattr("code", status as u32);
        let _ = v.setattr("message", message);
        let _ = v.setattr("fault_code", fault.map(|f| f.code));
        let _ = v.setattr("fault_address", fault.map(|f| f.address));
        err
    })
}

fn api_error(e: api::Error) -> PyErr {
    npu_error(e.status, &e.message, e.fault)
}

fn invalid(message: String) -> PyErr {
    npu_error(Status::InvalidArgument, &message, None)
}

/// onnxruntime's type string for a dtype.
fn ort_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "tensor(float)",
        DType::I8 => "tensor(int8)",
        DType::I32 => "tensor(int32)",
        DType::U8 => "tensor(uint8)",
        DType::F16 => "tensor(float16)",
        DType::Bf16 => "tensor(bfloat16)",
    }
}

/// An input or output, as onnxruntime's `NodeArg`.
#[pyclass(frozen, module = "npu")]
struct NodeArg {
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    shape: Vec<usize>,
    #[pyo3(get, name = "type")]
    ty: String,
    /// The IR value's name (what libnpu's request knows it by).
    ir_name: String,
    dtype: DType,
}

#[pymethods]
impl NodeArg {
    fn __repr__(&self) -> String {
        format!(
            "NodeArg(name='{}', type='{}', shape={:?})",
            self.name, self.ty, self.shape
        )
    }
}

impl NodeArg {
    fn new(io: &npu_onnx::IoInfo) -> NodeArg {
        NodeArg {
            name: io.name.clone(),
            shape: io.ty.shape.clone(),
            ty: ort_type(io.ty.dtype).into(),
            ir_name: io.ir_name.clone(),
            dtype: io.ty.dtype,
        }
    }

    fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// An ONNX model compiled for one NPU, runnable from any number of threads.
#[pyclass(frozen, module = "npu")]
struct InferenceSession {
    model: CompiledModel,
    inputs: Vec<Py<NodeArg>>,
    outputs: Vec<Py<NodeArg>>,
    backend: &'static str,
}

fn open(backend: Option<&str>) -> PyResult<(Npu, &'static str)> {
    match backend {
        Some("model") => Ok((Npu::model(MODEL_SRAM).map_err(api_error)?, "model")),
        Some("accel") => Ok((Npu::open().map_err(api_error)?, "accel")),
        None => match Npu::open() {
            Ok(npu) => Ok((npu, "accel")),
            Err(e) => Err(npu_error(
                e.status,
                &format!("{} (no NPU to use: pass backend=\"model\" to run on the in-process device model)", e.message),
                e.fault,
            )),
        },
        Some(other) => Err(invalid(format!(
            "unknown backend `{other}`: \"accel\" (/dev/accel) or \"model\" (the in-process device model)"
        ))),
    }
}

fn import_error(e: npu_onnx::ImportError) -> PyErr {
    let status = match e {
        npu_onnx::ImportError::Io { .. } => Status::Io,
        npu_onnx::ImportError::Decode(_) => Status::Parse,
        _ => Status::Unsupported,
    };
    let mut message = e.to_string();
    if let npu_onnx::ImportError::Input { name, .. } = &e {
        // The importer's hint names npu-submit's option; this is Python's.
        message += &format!(" (here: input_shapes={{\"{name}\": [D0, D1, ...]}})");
    }
    npu_error(status, &message, None)
}

/// Copy an array's elements (any strides) as little-endian bytes.
fn elements<'py, T>(arr: &Bound<'py, PyUntypedArray>, out: &mut Vec<u8>) -> PyResult<()>
where
    T: numpy::Element + Copy + ToLe,
{
    let typed = arr.cast::<PyArrayDyn<T>>()?;
    let ro = typed.try_readonly()?;
    for x in ro.as_array().iter() {
        x.put(out);
    }
    Ok(())
}

trait ToLe {
    fn put(self, out: &mut Vec<u8>);
}
impl ToLe for f32 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl ToLe for i8 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl ToLe for u8 {
    fn put(self, out: &mut Vec<u8>) {
        out.push(self)
    }
}
impl ToLe for half::f16 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl ToLe for half::bf16 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}
impl ToLe for i32 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

/// A numpy array of `shape` from little-endian bytes.
fn to_array<'py, T: numpy::Element>(
    py: Python<'py>,
    bytes: &[u8],
    shape: &[usize],
    size: usize,
    from: impl Fn(&[u8]) -> T,
) -> PyResult<Bound<'py, PyAny>> {
    let v: Vec<T> = bytes.chunks_exact(size).map(from).collect();
    Ok(PyArray1::from_vec(py, v).reshape(shape)?.into_any())
}

#[pymethods]
impl InferenceSession {
    /// `InferenceSession(path, sess_options=None, providers=None, *,
    /// backend=None, input_shapes=None)`. `sess_options` and `providers`
    /// are accepted for onnxruntime compatibility and not used.
    #[new]
    #[pyo3(signature = (path, sess_options=None, providers=None, *, backend=None, input_shapes=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        sess_options: Option<Bound<'_, PyAny>>,
        providers: Option<Bound<'_, PyAny>>,
        backend: Option<&str>,
        input_shapes: Option<HashMap<String, Vec<usize>>>,
    ) -> PyResult<InferenceSession> {
        let _ = (sess_options, providers);
        let (npu, backend) = open(backend)?;
        let opts = npu_onnx::Options {
            input_shapes: input_shapes.unwrap_or_default(),
            cpu_fallback: false,
        };
        // Importing and compiling a real model takes a while: without the GIL.
        let (imported, model) = py.detach(|| -> PyResult<_> {
            let imported = npu_onnx::load(&path, &opts).map_err(import_error)?;
            let model = npu.load_graph(imported.graph.clone()).map_err(api_error)?;
            Ok((imported, model))
        })?;
        let args = |ios: &[npu_onnx::IoInfo]| -> PyResult<Vec<Py<NodeArg>>> {
            ios.iter().map(|io| Py::new(py, NodeArg::new(io))).collect()
        };
        let s = InferenceSession {
            inputs: args(&imported.inputs)?,
            outputs: args(&imported.outputs)?,
            model,
            backend,
        };
        // The ONNX view and the compiled program must agree on every size.
        for (args, infos) in [
            (&s.inputs, s.model.inputs()),
            (&s.outputs, s.model.outputs()),
        ] {
            for a in args {
                let a = a.get();
                let info = infos.iter().find(|t| t.name == a.ir_name).ok_or_else(|| {
                    npu_error(
                        Status::Internal,
                        &format!("`{}` is not in the compiled model", a.name),
                        None,
                    )
                })?;
                if info.ty.bytes() != a.bytes() {
                    return Err(npu_error(
                        Status::Internal,
                        &format!(
                            "`{}`: {} bytes in the ONNX model, {} compiled",
                            a.name,
                            a.bytes(),
                            info.ty.bytes()
                        ),
                        None,
                    ));
                }
            }
        }
        Ok(s)
    }

    fn get_inputs(&self, py: Python<'_>) -> Vec<Py<NodeArg>> {
        self.inputs.iter().map(|a| a.clone_ref(py)).collect()
    }

    fn get_outputs(&self, py: Python<'_>) -> Vec<Py<NodeArg>> {
        self.outputs.iter().map(|a| a.clone_ref(py)).collect()
    }

    /// "accel" or "model".
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// `run(output_names, input_feed, run_options=None)`: a list of numpy
    /// arrays, one per name in `output_names` (every output, in the
    /// model's order, for None).
    #[pyo3(signature = (output_names, input_feed, run_options=None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        output_names: Option<Vec<String>>,
        input_feed: &Bound<'py, PyDict>,
        run_options: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let _ = run_options;
        let (ins, wanted) = self.prepare(py, output_names, input_feed)?;
        let ir_names: Vec<String> = wanted
            .iter()
            .map(|&i| self.outputs[i].get().ir_name.clone())
            .collect();
        let model = self.model.clone();
        // The run itself, without the GIL: a request of its own, so other
        // threads' runs of this session do not touch it.
        let results = py
            .detach(move || -> api::Result<Vec<Vec<u8>>> {
                let r = model.request();
                for (name, bytes) in &ins {
                    r.set_input(name, bytes)?;
                }
                r.run()?;
                ir_names.iter().map(|n| r.output(n)).collect()
            })
            .map_err(api_error)?;
        let args: Vec<&NodeArg> = wanted.iter().map(|&i| self.outputs[i].get()).collect();
        arrays(py, &args, results)
    }

    /// `run_async(output_names, input_feed, wait_for=None)`: start a run
    /// and return its `Fence` at once; `Fence.wait()` gives what `run`
    /// would. The run starts on the device only after every fence in
    /// `wait_for` has ended successfully (else it fails without running).
    #[pyo3(signature = (output_names, input_feed, wait_for=None))]
    fn run_async<'py>(
        &self,
        py: Python<'py>,
        output_names: Option<Vec<String>>,
        input_feed: &Bound<'py, PyDict>,
        wait_for: Option<Vec<Py<Fence>>>,
    ) -> PyResult<Fence> {
        let (ins, wanted) = self.prepare(py, output_names, input_feed)?;
        let after: Vec<api::Fence> = wait_for
            .unwrap_or_default()
            .iter()
            .map(|f| f.get().fence.clone())
            .collect();
        let request = self.model.request();
        let fence = py
            .detach(|| -> api::Result<api::Fence> {
                for (name, bytes) in &ins {
                    request.set_input(name, bytes)?;
                }
                request.start(&after)
            })
            .map_err(api_error)?;
        Ok(Fence {
            fence,
            request,
            outputs: wanted
                .iter()
                .map(|&i| self.outputs[i].clone_ref(py))
                .collect(),
        })
    }
}

impl InferenceSession {
    /// Check `input_feed` against the model: the inputs' IR names and bytes,
    /// and the indices of the outputs wanted.
    #[allow(clippy::type_complexity)]
    fn prepare<'py>(
        &self,
        py: Python<'py>,
        output_names: Option<Vec<String>>,
        input_feed: &Bound<'py, PyDict>,
    ) -> PyResult<(Vec<(String, Vec<u8>)>, Vec<usize>)> {
        let mut feeds: Vec<Option<Vec<u8>>> = vec![None; self.inputs.len()];
        for (k, v) in input_feed.iter() {
            let name: String = k.extract()?;
            let i = self
                .inputs
                .iter()
                .position(|a| a.get().name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        self.inputs.iter().map(|a| a.get().name.as_str()).collect();
                    npu_error(
                        Status::NotFound,
                        &format!("the model has no input `{name}` (its inputs: {names:?})"),
                        None,
                    )
                })?;
            let a = self.inputs[i].get();
            let arr = v.cast::<PyUntypedArray>().map_err(|_| {
                invalid(format!(
                    "input `{name}`: a numpy array is needed, not {}",
                    v.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
            let want = match a.dtype {
                DType::F32 => numpy::dtype::<f32>(py),
                DType::I8 => numpy::dtype::<i8>(py),
                DType::I32 => numpy::dtype::<i32>(py),
                DType::U8 => numpy::dtype::<u8>(py),
                DType::F16 => numpy::dtype::<half::f16>(py),
                // numpy's bfloat16 comes from ml_dtypes: an error without it.
                DType::Bf16 => numpy::PyArrayDescr::new(py, "bfloat16").map_err(|_| {
                    invalid(format!(
                        "input `{name}` is bfloat16, which numpy has with ml_dtypes only"
                    ))
                })?,
            };
            if !arr.dtype().is_equiv_to(&want) {
                return Err(invalid(format!(
                    "input `{name}`: dtype {} given, the model takes {} ({})",
                    arr.dtype(),
                    want,
                    a.ty
                )));
            }
            if arr.shape() != a.shape.as_slice() {
                return Err(invalid(format!(
                    "input `{name}`: shape {:?} given, the model takes {:?}",
                    arr.shape(),
                    a.shape
                )));
            }
            let mut bytes = Vec::with_capacity(a.bytes());
            match a.dtype {
                DType::F32 => elements::<f32>(arr, &mut bytes)?,
                DType::I8 => elements::<i8>(arr, &mut bytes)?,
                DType::I32 => elements::<i32>(arr, &mut bytes)?,
                DType::U8 => elements::<u8>(arr, &mut bytes)?,
                DType::F16 => elements::<half::f16>(arr, &mut bytes)?,
                DType::Bf16 => elements::<half::bf16>(arr, &mut bytes)?,
            }
            feeds[i] = Some(bytes);
        }
        let mut ins: Vec<(String, Vec<u8>)> = Vec::with_capacity(feeds.len());
        for (a, feed) in self.inputs.iter().zip(feeds) {
            let a = a.get();
            let bytes = feed.ok_or_else(|| invalid(format!("input `{}` is not given", a.name)))?;
            ins.push((a.ir_name.clone(), bytes));
        }
        let wanted: Vec<usize> = match output_names {
            None => (0..self.outputs.len()).collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    self.outputs
                        .iter()
                        .position(|a| a.get().name == *n)
                        .ok_or_else(|| {
                            npu_error(
                                Status::NotFound,
                                &format!("the model has no output `{n}`"),
                                None,
                            )
                        })
                })
                .collect::<PyResult<_>>()?,
        };
        Ok((ins, wanted))
    }
}

/// The outputs' bytes as numpy arrays of their NodeArgs' shapes.
fn arrays<'py>(
    py: Python<'py>,
    args: &[&NodeArg],
    results: Vec<Vec<u8>>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    args.iter()
        .zip(results)
        .map(|(a, bytes)| match a.dtype {
            DType::F32 => to_array(py, &bytes, &a.shape, 4, |c| {
                f32::from_le_bytes([c[0], c[1], c[2], c[3]])
            }),
            DType::I8 => to_array(py, &bytes, &a.shape, 1, |c| c[0] as i8),
            DType::U8 => to_array(py, &bytes, &a.shape, 1, |c| c[0]),
            DType::I32 => to_array(py, &bytes, &a.shape, 4, |c| {
                i32::from_le_bytes([c[0], c[1], c[2], c[3]])
            }),
            DType::F16 => to_array(py, &bytes, &a.shape, 2, |c| {
                half::f16::from_le_bytes([c[0], c[1]])
            }),
            DType::Bf16 => to_array(py, &bytes, &a.shape, 2, |c| {
                half::bf16::from_le_bytes([c[0], c[1]])
            }),
        })
        .collect()
}

/// The end of a `run_async`: wait on it for the outputs, or pass it to
/// another `run_async(..., wait_for=[fence])`.
#[pyclass(frozen, module = "npu")]
struct Fence {
    fence: api::Fence,
    request: api::InferRequest,
    outputs: Vec<Py<NodeArg>>,
}

#[pymethods]
impl Fence {
    /// `wait(timeout=None)`: the outputs once the run has ended (seconds;
    /// None waits as long as it takes). A run still going after `timeout`
    /// raises NpuError with status NPU_ERROR_TIMEOUT; a failed run its error
    /// (a faulted job with its fault).
    #[pyo3(signature = (timeout=None))]
    fn wait<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let timeout = match timeout {
            Some(t) if !(t >= 0.0 && t.is_finite()) => {
                return Err(invalid(format!("timeout {t}: seconds, 0 or more")))
            }
            t => t.map(std::time::Duration::from_secs_f64),
        };
        let names: Vec<String> = self
            .outputs
            .iter()
            .map(|a| a.get().ir_name.clone())
            .collect();
        let results = py
            .detach(|| -> api::Result<Vec<Vec<u8>>> {
                self.fence.wait(timeout)?;
                names.iter().map(|n| self.request.output(n)).collect()
            })
            .map_err(api_error)?;
        let args: Vec<&NodeArg> = self.outputs.iter().map(|a| a.get()).collect();
        arrays(py, &args, results)
    }

    /// True once the run has ended (successfully or not).
    #[getter]
    fn done(&self) -> bool {
        self.fence.is_signaled()
    }
}

/// An NPU opened for raw command buffers (tools and device tests):
/// `Device(backend=None)` as `InferenceSession`'s backend.
#[pyclass(frozen, module = "npu")]
struct Device {
    npu: Npu,
    backend: &'static str,
}

#[pymethods]
impl Device {
    #[new]
    #[pyo3(signature = (backend=None))]
    fn new(backend: Option<&str>) -> PyResult<Device> {
        let (npu, backend) = open(backend)?;
        Ok(Device { npu, backend })
    }

    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// `run_raw(commands, sizes=())`: submit `commands` (whole 64-byte
    /// instructions) as they are, with zero-filled buffers of `sizes`
    /// bytes mapped in order; a list of (NPU address, bytes after the job)
    /// per buffer. A faulting job raises NpuError with `fault_code` and
    /// `fault_address`.
    #[pyo3(signature = (commands, sizes=Vec::new()))]
    fn run_raw(
        &self,
        py: Python<'_>,
        commands: Vec<u8>,
        sizes: Vec<u64>,
    ) -> PyResult<Vec<(u64, Vec<u8>)>> {
        let run = py
            .detach(|| self.npu.run_raw(&commands, &sizes))
            .map_err(api_error)?;
        Ok(run.addresses.into_iter().zip(run.buffers).collect())
    }
}

/// The onpu accel nodes (`npu::api::devices()`), as paths.
#[pyfunction]
fn devices() -> Vec<PathBuf> {
    api::devices()
}

#[pymodule]
#[pyo3(name = "npu")]
fn npu_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<InferenceSession>()?;
    m.add_class::<NodeArg>()?;
    m.add_class::<Fence>()?;
    m.add_class::<Device>()?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add("NpuError", m.py().get_type::<NpuError>())?;
    Ok(())
}
