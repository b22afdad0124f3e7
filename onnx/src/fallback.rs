//! CPU fallback (`Options::cpu_fallback`): a node the NPU cannot run, of
//! an op this module implements on the CPU, splits the model into
//! segments run in order: NPU graphs and CPU nodes, with the values that
//! cross between them kept by ONNX name. Off by default, so a CPU result is
//! never mistaken for an NPU one (npu-submit --cpu-fallback).
//!
//! The CPU ops are f32 elementwise ops the ISA has no function for, as
//! the ONNX operator definitions give them: `Abs`, `Neg`, `Floor`, `Ceil`,
//! `Round` (half to even), `Sin` and `Cos`. (Concat, Transpose, Sqrt and
//! Reciprocal, which it ran before the IR had them, run on the NPU now.)

use super::{ImportError, Importer, IoInfo, Val};
use npu::ir::Op;
use npu::runtime::{self, Session};
use npu::{DType, Graph, TensorData, TensorType};
use onnx_protobuf::NodeProto;
use std::collections::HashMap;

/// One step of a partitioned model.
#[derive(Debug)]
pub enum Segment {
    Npu(NpuSegment),
    Cpu(CpuNode),
}

/// An NPU graph: its inputs are values of earlier steps (or the model's
/// inputs), by ONNX name (the IR input has the same name).
#[derive(Debug)]
pub struct NpuSegment {
    pub graph: Graph,
    pub inputs: Vec<String>,
    /// (ONNX value, the IR value or input holding its bytes, its shape).
    pub outputs: Vec<(String, String, Vec<usize>)>,
}

/// A node run on the CPU.
#[derive(Debug)]
pub struct CpuNode {
    pub node: String,
    pub op: String,
    pub inputs: Vec<String>,
    pub output: String,
    pub shape: Vec<usize>,
    /// The inputs known at import time (f32), by name.
    consts: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Whether the CPU runs `op`.
pub(crate) fn cpu_runs(op: &str) -> bool {
    matches!(
        op,
        "Abs" | "Neg" | "Floor" | "Ceil" | "Round" | "Sin" | "Cos"
    )
}

impl Importer<'_> {
    /// Values computed so far that node `i` or a later one (or the
    /// graph's outputs) reads.
    fn live(&self, i: usize) -> Vec<(String, npu::ValueId)> {
        let mut v: Vec<(String, npu::ValueId)> = self
            .vals
            .iter()
            .filter_map(|(name, val)| match val {
                Val::Ir(id) => Some((name.clone(), *id)),
                Val::Host(_) => None,
            })
            .filter(|(name, _)| {
                self.graph_outputs.contains(name.as_str())
                    || self
                        .consumers
                        .get(name.as_str())
                        .is_some_and(|c| c.iter().any(|&j| j >= i))
            })
            .collect();
        v.sort();
        v
    }

    /// End the current NPU graph: the values node `i` on reads become its
    /// outputs (a reshape's operand, or the input it passes through, holds
    /// the bytes). Returns the segment, or `None` when it computed nothing.
    pub(crate) fn close_segment(&mut self, i: usize) -> Result<Option<NpuSegment>, ImportError> {
        let live = self.live(i);
        let mut g = std::mem::take(&mut self.g);
        self.materialized.clear();
        let inputs: Vec<String> = g.inputs().map(|v| g.node(v).name.clone()).collect();
        let mut outputs = Vec::new();
        for (name, id) in &live {
            let mut src = *id;
            while let Op::Reshape { x, .. } = g.node(src).op {
                src = x;
            }
            if g.node(src).op != Op::Input && !g.outputs().contains(&src) {
                g.output(src)?;
            }
            outputs.push((
                name.clone(),
                g.node(src).name.clone(),
                g.ty(*id).shape.clone(),
            ));
        }
        let computes = !g.outputs().is_empty();
        // Values of the closed graph no later node reads are gone; the next
        // graph reads every live value as an input.
        self.vals.retain(|_, v| matches!(v, Val::Host(_)));
        for (name, id) in &live {
            let shape = g.ty(*id).shape.clone();
            let v = self.g.input(name, TensorType::new(DType::F32, &shape))?;
            self.vals.insert(name.clone(), Val::Ir(v));
        }
        Ok(computes.then_some(NpuSegment {
            graph: g,
            inputs,
            outputs,
        }))
    }

    /// Node `n` (index `i`) on the CPU: the NPU graph so far is closed
    /// (its segment pushed) and a new one started after the node.
    pub(crate) fn fall_back(&mut self, n: &NodeProto, i: usize) -> Result<(), ImportError> {
        let ctx = super::Ctx { n };
        // Constants the node reads go with it.
        let mut shapes = Vec::new();
        let mut consts = HashMap::new();
        for name in n.input.iter().filter(|s| !s.is_empty()) {
            match self.get(name, &ctx)? {
                Val::Ir(id) => shapes.push(self.g.ty(id).shape.clone()),
                Val::Host(t) => {
                    if !matches!(t.data, super::Data::F32(_)) {
                        return Err(ctx.err(format!(
                            "the CPU fallback takes f32 tensors; `{name}` is {}",
                            t.data.kind()
                        )));
                    }
                    shapes.push(t.shape.clone());
                    consts.insert(name.clone(), (t.shape.clone(), t.data.as_f32()));
                }
            }
        }
        if let Some(seg) = self.close_segment(i)? {
            self.segments.push(Segment::Npu(seg));
        }
        // close_segment made the live values inputs of the next graph; the
        // CPU node's output (elementwise: its input's shape) joins them.
        let shape = shapes
            .first()
            .cloned()
            .ok_or_else(|| ctx.err("no inputs"))?;
        let output = n.output[0].clone();
        self.segments.push(Segment::Cpu(CpuNode {
            node: ctx.name(),
            op: n.op_type.clone(),
            inputs: n.input.iter().filter(|s| !s.is_empty()).cloned().collect(),
            output: output.clone(),
            shape: shape.clone(),
            consts,
        }));
        let v = self.g.input(&output, TensorType::new(DType::F32, &shape))?;
        self.vals.insert(output, Val::Ir(v));
        Ok(())
    }
}

fn cpu(node: &CpuNode, env: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Result<Vec<f32>, String> {
    let arg = |i: usize| {
        env.get(&node.inputs[i])
            .or_else(|| node.consts.get(&node.inputs[i]))
            .ok_or_else(|| format!("`{}` has no value", node.inputs[i]))
    };
    Ok(match node.op.as_str() {
        "Abs" => arg(0)?.1.iter().map(|x| x.abs()).collect(),
        "Neg" => arg(0)?.1.iter().map(|x| -x).collect(),
        "Floor" => arg(0)?.1.iter().map(|x| x.floor()).collect(),
        "Ceil" => arg(0)?.1.iter().map(|x| x.ceil()).collect(),
        "Round" => arg(0)?.1.iter().map(|x| x.round_ties_even()).collect(),
        "Sin" => arg(0)?.1.iter().map(|x| x.sin()).collect(),
        "Cos" => arg(0)?.1.iter().map(|x| x.cos()).collect(),
        other => return Err(format!("no CPU kernel for {other}")),
    })
}

/// Run a partitioned model: `inputs` and the result by ONNX name. With
/// `check`, each NPU segment is compared with libnpu's CPU reference at
/// that tolerance.
pub fn run_segments(
    session: &mut Session,
    segments: &[Segment],
    inputs: &[IoInfo],
    data: &HashMap<String, TensorData>,
    outputs: &[IoInfo],
    check: Option<f32>,
) -> Result<HashMap<String, TensorData>, String> {
    let mut env: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for io in inputs {
        match data.get(&io.ir_name) {
            Some(TensorData::F32(v)) => {
                env.insert(io.name.clone(), (io.ty.shape.clone(), v.clone()))
            }
            _ => return Err(format!("input `{}`: no f32 data", io.name)),
        };
    }
    for seg in segments {
        match seg {
            Segment::Cpu(node) => {
                let v = cpu(node, &env)?;
                env.insert(node.output.clone(), (node.shape.clone(), v));
            }
            Segment::Npu(s) => {
                let k = session
                    .compile(s.graph.clone())
                    .map_err(|e| e.to_string())?;
                let mut feed = HashMap::new();
                for name in &s.inputs {
                    let (_, v) = env
                        .get(name)
                        .ok_or_else(|| format!("`{name}` has no value"))?;
                    feed.insert(name.clone(), TensorData::F32(v.clone()));
                }
                let run = session.run(&k, &feed).map_err(|e| e.to_string())?;
                if let Some(tol) = check {
                    runtime::check(&k.graph, &feed, &run.outputs, tol)
                        .map_err(|e| e.to_string())?;
                }
                for (name, src, shape) in &s.outputs {
                    let v = match run.outputs.get(src) {
                        Some(TensorData::F32(v)) => v.clone(),
                        Some(_) => return Err(format!("`{name}` is not f32")),
                        // An input passed through.
                        None => env
                            .get(src)
                            .map(|e| e.1.clone())
                            .ok_or_else(|| format!("`{name}` has no value"))?,
                    };
                    env.insert(name.clone(), (shape.clone(), v));
                }
            }
        }
    }
    outputs
        .iter()
        .map(|io| {
            env.get(&io.name)
                .map(|(_, v)| (io.name.clone(), TensorData::F32(v.clone())))
                .ok_or_else(|| format!("output `{}` was not computed", io.name))
        })
        .collect()
}
