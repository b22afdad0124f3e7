//! The kernel text form: parse into a [`Graph`] and print back.
//! Grammar and examples: Documentation/userspace/kernel-language.rst.

use crate::ir::{
    BinaryOp, CoordMode, DType, Graph, GraphError, NearestRound, Op, PadMode, PoolKind, Quant,
    ReduceKind, ResizeMode, TensorType, UnaryOp, ValueId, Window,
};
use std::fmt::Write as _;

/// A syntax or type error at a 1-based line and column.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{line}:{col}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Sym(&'static str),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
}

fn lex(line: &str, ln: usize) -> Result<Vec<Token>, ParseError> {
    let cs: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let col = i + 1;
        if c == '#' {
            break;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let s = i;
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_' || cs[i] == '.') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(cs[s..i].iter().collect()),
                col,
            });
        } else if c.is_ascii_digit() || c == '-' || c == '+' {
            let s = i;
            i += 1;
            while i < cs.len()
                && (cs[i].is_ascii_alphanumeric()
                    || cs[i] == '.'
                    || ((cs[i] == '-' || cs[i] == '+') && matches!(cs[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num(cs[s..i].iter().collect()),
                col,
            });
        } else if c == '|' && cs.get(i + 1) == Some(&'>') {
            out.push(Token {
                tok: Tok::Sym("|>"),
                col,
            });
            i += 2;
        } else {
            let sym = match c {
                ':' => ":",
                '=' => "=",
                ',' => ",",
                '(' => "(",
                ')' => ")",
                '[' => "[",
                ']' => "]",
                _ => {
                    return Err(ParseError {
                        line: ln,
                        col,
                        msg: format!("unexpected character `{c}`"),
                    })
                }
            };
            out.push(Token {
                tok: Tok::Sym(sym),
                col,
            });
            i += 1;
        }
    }
    Ok(out)
}

struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
    line: usize,
    end_col: usize,
}

impl Cursor<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        let col = self.toks.get(self.pos).map_or(self.end_col, |t| t.col);
        Err(ParseError {
            line: self.line,
            col,
            msg: msg.into(),
        })
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn describe(&self) -> String {
        match self.peek() {
            None => "end of line".into(),
            Some(Tok::Ident(s)) | Some(Tok::Num(s)) => format!("`{s}`"),
            Some(Tok::Sym(s)) => format!("`{s}`"),
        }
    }
    fn eat(&mut self, sym: &str) -> bool {
        if self.peek()
            == Some(&Tok::Sym(match sym {
                ":" => ":",
                "=" => "=",
                "," => ",",
                "(" => "(",
                ")" => ")",
                "[" => "[",
                "]" => "]",
                _ => "|>",
            }))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, sym: &str) -> Result<(), ParseError> {
        if self.eat(sym) {
            Ok(())
        } else {
            self.err(format!("expected `{sym}`, found {}", self.describe()))
        }
    }
    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.err(format!("expected {what}, found {}", self.describe())),
        }
    }
    fn num<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, ParseError> {
        match self.peek() {
            Some(Tok::Num(s)) => match s.parse() {
                Ok(v) => {
                    self.pos += 1;
                    Ok(v)
                }
                Err(_) => self.err(format!("`{s}` is not a valid {what}")),
            },
            _ => self.err(format!("expected {what}, found {}", self.describe())),
        }
    }
    fn list<T: std::str::FromStr>(&mut self, what: &str) -> Result<Vec<T>, ParseError> {
        self.list_of(|c| c.num(what))
    }
    fn list_of<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        self.expect("[")?;
        let mut v = vec![item(self)?];
        while self.eat(",") {
            v.push(item(self)?);
        }
        self.expect("]")?;
        Ok(v)
    }
    /// A quantization scale: a finite number above zero (`1e39` is
    /// infinite as an f32 and is refused, not rounded).
    fn scale(&mut self) -> Result<f32, ParseError> {
        let at = self.pos;
        let v = self.num::<f32>("scale")?;
        if v.is_finite() && v > 0.0 {
            return Ok(v);
        }
        self.pos = at;
        self.err(format!(
            "a scale must be a finite number above zero, not {v}"
        ))
    }
    fn done(&self) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.err(format!(
                "unexpected {} at the end of the line",
                self.describe()
            )),
        }
    }
}

/// `dtype[dims] [q(...)]`; the shape may be omitted for result annotations.
/// A parsed type: dtype, shape if written, quantization if written.
type ParsedType = (DType, Option<Vec<usize>>, Option<Quant>);

fn parse_type(c: &mut Cursor, shape_required: bool) -> Result<ParsedType, ParseError> {
    let dt = match c.ident("a dtype (f32, i8, i32, u8, f16, bf16)")?.as_str() {
        "f32" => DType::F32,
        "i8" => DType::I8,
        "i32" => DType::I32,
        "u8" => DType::U8,
        "f16" => DType::F16,
        "bf16" => DType::Bf16,
        other => {
            c.pos -= 1;
            return c.err(format!(
                "unknown dtype `{other}`; use f32, i8, i32, u8, f16 or bf16"
            ));
        }
    };
    let shape = if matches!(c.peek(), Some(Tok::Sym("["))) {
        Some(c.list::<usize>("dimension")?)
    } else if shape_required {
        return c.err(format!(
            "expected a shape like [64,128], found {}",
            c.describe()
        ));
    } else {
        None
    };
    let mut quant = None;
    if c.peek() == Some(&Tok::Ident("q".into())) {
        c.pos += 1;
        c.expect("(")?;
        let (mut scale, mut zp, mut axis, mut scales, mut zps) = (None, None, None, None, None);
        loop {
            let key = c.ident("`scale`, `zp`, `axis`, `scales` or `zps`")?;
            c.expect("=")?;
            match key.as_str() {
                "scale" => scale = Some(c.scale()?),
                // A u8 tensor's zero point is 0..255 (held as the int8
                // view's, zp - 128).
                "zp" if dt == DType::U8 => {
                    zp = Some(crate::ir::u8_zero_point(
                        c.num::<u8>("zero point (0..255)")?,
                    ))
                }
                "zp" => zp = Some(c.num::<i8>("zero point (-128..127)")?),
                "axis" => axis = Some(c.num::<usize>("axis")?),
                "scales" => scales = Some(c.list_of(Cursor::scale)?),
                "zps" => zps = Some(c.list::<i8>("zero point (-128..127)")?),
                _ => {
                    c.pos -= 2;
                    return c.err(format!("unknown quantization parameter `{key}`; use scale and zp, or axis, scales and zps"));
                }
            }
            if !c.eat(",") {
                break;
            }
        }
        c.expect(")")?;
        quant = Some(match (scale, zp, axis, scales, zps) {
            (Some(scale), zp, None, None, None) => Quant::PerTensor {
                scale,
                zero_point: zp.unwrap_or(0),
            },
            (None, None, Some(axis), Some(scales), zps) => Quant::PerChannel {
                scales,
                axis,
                zero_points: zps.unwrap_or_default(),
            },
            _ => {
                return c
                    .err("quantization is q(scale=S, zp=Z) or q(axis=A, scales=[...], zps=[...])")
            }
        });
    }
    Ok((dt, shape, quant))
}

/// Keyword arguments of a call.
#[derive(Default)]
struct Kw {
    items: Vec<(String, KwVal, usize)>,
}

enum KwVal {
    Value(ValueId),
    Nums(Vec<String>),
}

/// Parse a kernel.
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    let mut g = Graph::new();
    let mut last_line = 0;
    for (ln0, line) in src.lines().enumerate() {
        let ln = ln0 + 1;
        last_line = ln;
        let toks = lex(line, ln)?;
        if toks.is_empty() {
            continue;
        }
        let mut c = Cursor {
            toks: &toks,
            pos: 0,
            line: ln,
            end_col: line.chars().count() + 1,
        };
        let gerr = |c: &Cursor, col: usize, e: GraphError| ParseError {
            line: c.line,
            col,
            msg: e.to_string(),
        };
        let first_col = toks[0].col;
        let head = c.ident("`input`, `output` or a name")?;
        match head.as_str() {
            "input" => {
                let name = c.ident("the input's name")?;
                c.expect(":")?;
                let (dtype, shape, quant) = parse_type(&mut c, true)?;
                c.done()?;
                let ty = TensorType {
                    dtype,
                    shape: shape.unwrap_or_default(),
                    quant,
                };
                g.input(&name, ty).map_err(|e| gerr(&c, first_col, e))?;
            }
            "output" => loop {
                let col = c.toks.get(c.pos).map_or(c.end_col, |t| t.col);
                let name = c.ident("the name of a value to output")?;
                let v = g.lookup(&name).ok_or(ParseError {
                    line: ln,
                    col,
                    msg: format!("`{name}` is not defined"),
                })?;
                g.output(v).map_err(|e| gerr(&c, col, e))?;
                if !c.eat(",") {
                    c.done()?;
                    break;
                }
            },
            _ => {
                let name = head;
                let mut out_quant = None;
                if c.eat(":") {
                    let (dt, shape, q) = parse_type(&mut c, false)?;
                    if dt != DType::I8 || q.is_none() || shape.is_some() {
                        return c.err("a result annotation is `i8 q(scale=S, zp=Z)` (the quantization of an int8 result)");
                    }
                    out_quant = q;
                }
                c.expect("=")?;
                // A chain `f(..) |> g(..) |> h`: every stage but the last gets
                // the name `name.N`.
                let mut stages = Vec::new();
                loop {
                    let col = c.toks.get(c.pos).map_or(c.end_col, |t| t.col);
                    stages.push((parse_call(&mut c, &g, !stages.is_empty())?, col));
                    if !c.eat("|>") {
                        break;
                    }
                }
                c.done()?;
                let mut prev: Option<ValueId> = None;
                let count = stages.len();
                for (i, ((opname, mut args, kw), col)) in stages.into_iter().enumerate() {
                    if let Some(p) = prev {
                        args.insert(0, p);
                    }
                    let op = build_op(&opname, &args, kw).map_err(|msg| ParseError {
                        line: ln,
                        col,
                        msg,
                    })?;
                    let nm = if i + 1 == count {
                        name.clone()
                    } else {
                        format!("{name}.{}", i + 1)
                    };
                    let q = if i == 0 { out_quant.clone() } else { None };
                    prev = Some(g.add(&nm, op, q).map_err(|e| gerr(&c, col, e))?);
                }
            }
        }
    }
    g.validate().map_err(|e| ParseError {
        line: last_line.max(1),
        col: 1,
        msg: e.to_string(),
    })?;
    Ok(g)
}

type Call = (String, Vec<ValueId>, Kw);

/// `op(arg, ..., key=value, ...)`, or a bare `op` in a chain.
fn parse_call(c: &mut Cursor, g: &Graph, piped: bool) -> Result<Call, ParseError> {
    let op = c.ident("an op name")?;
    let mut args = Vec::new();
    let mut kw = Kw::default();
    if !c.eat("(") {
        if piped {
            return Ok((op, args, kw));
        }
        return c.err(format!("expected `(` after `{op}`"));
    }
    if c.eat(")") {
        return Ok((op, args, kw));
    }
    loop {
        let col = c.toks.get(c.pos).map_or(c.end_col, |t| t.col);
        match c.peek().cloned() {
            Some(Tok::Ident(name))
                if c.toks.get(c.pos + 1).map(|t| &t.tok) == Some(&Tok::Sym("=")) =>
            {
                c.pos += 2;
                let val = match c.peek().cloned() {
                    Some(Tok::Sym("[")) => KwVal::Nums(c.list::<String>("number")?),
                    Some(Tok::Num(n)) => {
                        c.pos += 1;
                        KwVal::Nums(vec![n])
                    }
                    // Words naming a mode (resize's mode, coord, round) or
                    // a type (cast's to).
                    Some(Tok::Ident(v))
                        if matches!(name.as_str(), "mode" | "coord" | "round" | "to") =>
                    {
                        c.pos += 1;
                        KwVal::Nums(vec![v])
                    }
                    Some(Tok::Ident(v)) if v == "true" || v == "false" => {
                        c.pos += 1;
                        KwVal::Nums(vec![(if v == "true" { "1" } else { "0" }).into()])
                    }
                    Some(Tok::Ident(v)) => {
                        let vcol = c.toks[c.pos].col;
                        c.pos += 1;
                        KwVal::Value(g.lookup(&v).ok_or(ParseError {
                            line: c.line,
                            col: vcol,
                            msg: format!("`{v}` is not defined"),
                        })?)
                    }
                    _ => {
                        return c.err(format!(
                            "expected a value for `{name}`, found {}",
                            c.describe()
                        ))
                    }
                };
                kw.items.push((name, val, col));
            }
            Some(Tok::Ident(v)) => {
                c.pos += 1;
                args.push(g.lookup(&v).ok_or(ParseError {
                    line: c.line,
                    col,
                    msg: format!("`{v}` is not defined"),
                })?);
            }
            Some(Tok::Sym("[")) if op == "reshape" => {
                let dims = c.list::<String>("dimension")?;
                kw.items.push(("shape".into(), KwVal::Nums(dims), col));
            }
            _ => return c.err(format!("expected an argument, found {}", c.describe())),
        }
        if !c.eat(",") {
            break;
        }
    }
    c.expect(")")?;
    Ok((op, args, kw))
}

fn build_op(name: &str, args: &[ValueId], kw: Kw) -> Result<Op, String> {
    let mut bias = None;
    let mut nums: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v, _) in kw.items {
        match (k.as_str(), v) {
            ("bias", KwVal::Value(v)) => bias = Some(v),
            (_, KwVal::Value(_)) => return Err(format!("`{k}` takes a number, not a value")),
            (_, KwVal::Nums(n)) => nums.push((k, n)),
        }
    }
    let allowed: &[&str] = match name {
        "gemm" => &["trans_a", "trans_b"],
        "conv2d" => &["stride", "pad", "dilation", "groups"],
        "maxpool" | "avgpool" => &["kernel", "stride", "pad"],
        "softmax" => &["axis"],
        "clamp" => &["lo", "hi"],
        "reshape" => &["shape"],
        "leaky_relu" | "elu" => &["alpha"],
        "hard_sigmoid" | "hard_swish" => &["alpha", "beta"],
        "reduce_sum" | "reduce_mean" | "reduce_max" | "reduce_min" => &["axes", "keepdims"],
        "log_softmax" => &["axis"],
        "concat" => &["axis"],
        "slice" => &["begin", "step", "shape"],
        "pad" => &["begin", "end", "value", "mode"],
        "transpose" => &["perm"],
        "depth_to_space" => &["block", "crd"],
        "space_to_depth" => &["block"],
        "resize" => &["size", "scale", "mode", "coord", "round"],
        "cast" => &["to"],
        _ => &[],
    };
    if let Some((k, _)) = nums.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "`{name}` has no parameter `{k}`{}",
            if allowed.is_empty() {
                String::new()
            } else {
                format!(" (it takes {})", allowed.join(", "))
            }
        ));
    }
    if bias.is_some() && name != "gemm" && name != "conv2d" {
        return Err(format!("`{name}` takes no bias"));
    }
    let get = |k: &str| nums.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let usize_of = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("`{s}` is not a non-negative integer"))
    };
    let pair = |k: &str, default: usize| -> Result<[usize; 2], String> {
        match get(k).as_deref() {
            None => Ok([default; 2]),
            Some([a]) => Ok([usize_of(a)?; 2]),
            Some([a, b]) => Ok([usize_of(a)?, usize_of(b)?]),
            Some(_) => Err(format!("`{k}` is one number or [h, w]")),
        }
    };
    let flag = |k: &str| get(k).is_some_and(|v| v.first().map(String::as_str) == Some("1"));
    let f32_of = |k: &str| -> Result<f32, String> {
        let v = get(k).ok_or(format!("`{name}` needs `{k}=`"))?;
        v.first()
            .and_then(|s| s.parse::<f32>().ok())
            .ok_or(format!("`{k}` must be a number"))
    };
    let arity = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "`{name}` takes {n} value argument{}, got {}",
                if n == 1 { "" } else { "s" },
                args.len()
            ))
        }
    };
    let binary = |op: BinaryOp| -> Result<Op, String> {
        arity(2)?;
        Ok(Op::Binary {
            op,
            a: args[0],
            b: args[1],
        })
    };
    let unary = |op: UnaryOp| -> Result<Op, String> {
        arity(1)?;
        Ok(Op::Unary { op, x: args[0] })
    };
    match name {
        "gemm" => {
            arity(2)?;
            Ok(Op::Gemm { a: args[0], b: args[1], bias, trans_a: flag("trans_a"), trans_b: flag("trans_b") })
        }
        "conv2d" => {
            arity(2)?;
            let window = Window { stride: pair("stride", 1)?, padding: pair("pad", 0)?, dilation: pair("dilation", 1)? };
            let groups = get("groups").map_or(Ok(1), |v| usize_of(v.first().map_or("", |s| s.as_str())))?;
            Ok(Op::Conv2d { input: args[0], weight: args[1], bias, window, groups })
        }
        "add" => binary(BinaryOp::Add),
        "sub" => binary(BinaryOp::Sub),
        "mul" => binary(BinaryOp::Mul),
        "div" => binary(BinaryOp::Div),
        "max" => binary(BinaryOp::Max),
        "min" => binary(BinaryOp::Min),
        "relu" => unary(UnaryOp::Relu),
        "sigmoid" => unary(UnaryOp::Sigmoid),
        "tanh" => unary(UnaryOp::Tanh),
        "exp" => unary(UnaryOp::Exp),
        "clamp" => unary(UnaryOp::Clamp { lo: f32_of("lo")?, hi: f32_of("hi")? }),
        "maxpool" | "avgpool" => {
            arity(1)?;
            let kernel = get("kernel").ok_or("pooling needs `kernel=`")?;
            let kernel = match kernel.as_slice() {
                [a] => [usize_of(a)?; 2],
                [a, b] => [usize_of(a)?, usize_of(b)?],
                _ => return Err("`kernel` is one number or [h, w]".into()),
            };
            let window = Window { stride: pair("stride", 1)?, padding: pair("pad", 0)?, dilation: [1, 1] };
            let kind = if name == "maxpool" { PoolKind::Max } else { PoolKind::Avg };
            Ok(Op::Pool { kind, x: args[0], kernel, window })
        }
        "softmax" => {
            arity(1)?;
            let axis = get("axis").ok_or("softmax needs `axis=`")?;
            Ok(Op::Softmax { x: args[0], axis: usize_of(axis.first().map_or("", |s| s.as_str()))? })
        }
        "quantize" => {
            arity(1)?;
            Ok(Op::Quantize { x: args[0] })
        }
        "dequantize" => {
            arity(1)?;
            Ok(Op::Dequantize { x: args[0] })
        }
        "sign_flip" => {
            arity(1)?;
            Ok(Op::SignFlip { x: args[0] })
        }
        "cast" => {
            arity(1)?;
            let to = match get("to").and_then(|v| v.first().cloned()).as_deref() {
                Some("f32") => DType::F32,
                Some("f16") => DType::F16,
                Some("bf16") => DType::Bf16,
                Some(t) => return Err(format!("cast converts to f32, f16 or bf16, not `{t}`")),
                None => return Err("cast needs the type, e.g. cast(x, to=f16)".into()),
            };
            Ok(Op::Cast { x: args[0], to })
        }
        "reshape" => {
            arity(1)?;
            let shape = get("shape").ok_or("reshape needs the new shape, e.g. reshape(x, [1,1024])")?;
            Ok(Op::Reshape { x: args[0], shape: shape.iter().map(|s| usize_of(s)).collect::<Result<_, _>>()? })
        }
        "prelu" => binary(BinaryOp::Prelu),
        "sqrt" => unary(UnaryOp::Sqrt),
        "reciprocal" => unary(UnaryOp::Reciprocal),
        "rsqrt" => unary(UnaryOp::Rsqrt),
        "log" => unary(UnaryOp::Log),
        "erf" => unary(UnaryOp::Erf),
        "gelu" => unary(UnaryOp::Gelu),
        "gelu_tanh" => unary(UnaryOp::GeluTanh),
        "leaky_relu" => unary(UnaryOp::LeakyRelu { alpha: f32_of("alpha")? }),
        "elu" => unary(UnaryOp::Elu { alpha: f32_of("alpha")? }),
        "hard_sigmoid" => unary(UnaryOp::HardSigmoid { alpha: f32_of("alpha")?, beta: f32_of("beta")? }),
        "hard_swish" => unary(UnaryOp::HardSwish { alpha: f32_of("alpha")?, beta: f32_of("beta")? }),
        "reduce_sum" | "reduce_mean" | "reduce_max" | "reduce_min" => {
            arity(1)?;
            let kind = match name {
                "reduce_sum" => ReduceKind::Sum,
                "reduce_mean" => ReduceKind::Mean,
                "reduce_max" => ReduceKind::Max,
                _ => ReduceKind::Min,
            };
            let axes = get("axes").ok_or("a reduction needs `axes=`, e.g. axes=[1,2]")?;
            let axes = axes.iter().map(|s| usize_of(s)).collect::<Result<_, _>>()?;
            Ok(Op::Reduce { kind, x: args[0], axes, keepdims: flag("keepdims") })
        }
        "log_softmax" => {
            arity(1)?;
            let axis = get("axis").ok_or("log_softmax needs `axis=`")?;
            Ok(Op::LogSoftmax { x: args[0], axis: usize_of(axis.first().map_or("", |s| s.as_str()))? })
        }
        "concat" => {
            if args.is_empty() {
                return Err("`concat` takes at least one value".into());
            }
            let axis = get("axis").ok_or("concat needs `axis=`")?;
            Ok(Op::Concat { xs: args.to_vec(), axis: usize_of(axis.first().map_or("", |s| s.as_str()))? })
        }
        "slice" => {
            arity(1)?;
            let list = |k: &str| get(k).ok_or(format!("slice needs `{k}=[...]` (one entry per axis)"));
            let step = list("step")?
                .iter()
                .map(|s| s.parse::<i64>().map_err(|_| format!("`{s}` is not an integer")))
                .collect::<Result<_, _>>()?;
            let begin = list("begin")?.iter().map(|s| usize_of(s)).collect::<Result<_, _>>()?;
            let shape = list("shape")?.iter().map(|s| usize_of(s)).collect::<Result<_, _>>()?;
            Ok(Op::Slice { x: args[0], begin, step, shape })
        }
        "pad" => {
            arity(1)?;
            let list = |k: &str| -> Result<Vec<usize>, String> {
                get(k).ok_or(format!("pad needs `{k}=[...]` (one entry per axis)"))?.iter().map(|s| usize_of(s)).collect()
            };
            let value = if get("value").is_some() { f32_of("value")? } else { 0.0 };
            let mode = match get("mode").and_then(|v| v.first().cloned()).as_deref() {
                None | Some("constant") => PadMode::Constant,
                Some("edge") => PadMode::Edge,
                Some("reflect") => PadMode::Reflect,
                Some(m) => return Err(format!("unknown pad mode `{m}`; modes are constant, edge and reflect")),
            };
            Ok(Op::Pad { x: args[0], begin: list("begin")?, end: list("end")?, value, mode })
        }
        "transpose" => {
            arity(1)?;
            let perm = get("perm").ok_or("transpose needs `perm=[...]`")?;
            Ok(Op::Transpose { x: args[0], perm: perm.iter().map(|s| usize_of(s)).collect::<Result<_, _>>()? })
        }
        "depth_to_space" | "space_to_depth" => {
            arity(1)?;
            let block = get("block").ok_or(format!("{name} needs `block=`"))?;
            let block = usize_of(block.first().map_or("", |s| s.as_str()))?;
            Ok(if name == "depth_to_space" {
                Op::DepthToSpace { x: args[0], block, crd: flag("crd") }
            } else {
                Op::SpaceToDepth { x: args[0], block }
            })
        }
        "resize" => {
            arity(1)?;
            let size = pair("size", 0)?;
            let scale = match get("scale").as_deref() {
                Some([a, b]) => [a, b].map(|s| s.parse::<f32>().map_err(|_| format!("`{s}` is not a number"))),
                _ => return Err("resize needs `scale=[h, w]` (output / input size)".into()),
            };
            let scale = [scale[0].clone()?, scale[1].clone()?];
            let word = |k: &str, default: &str| get(k).and_then(|v| v.first().cloned()).unwrap_or(default.to_string());
            let coord = word("coord", "half_pixel");
            let coord = CoordMode::ALL
                .into_iter()
                .find(|c| c.name() == coord)
                .ok_or(format!("unknown coord `{coord}`; coords are half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn"))?;
            let mode = match word("mode", "nearest").as_str() {
                "linear" => ResizeMode::Linear,
                "nearest" => {
                    let r = word("round", "round_prefer_floor");
                    ResizeMode::Nearest(NearestRound::ALL.into_iter().find(|n| n.name() == r).ok_or(format!(
                        "unknown round `{r}`; rounds are round_prefer_floor, round_prefer_ceil, floor, ceil"
                    ))?)
                }
                m => return Err(format!("unknown resize mode `{m}`; modes are nearest and linear")),
            };
            Ok(Op::Resize { x: args[0], size, scale, mode, coord })
        }
        "equal" => binary(BinaryOp::Equal),
        "not_equal" => binary(BinaryOp::NotEqual),
        "less" => binary(BinaryOp::Less),
        "less_equal" => binary(BinaryOp::LessOrEqual),
        "greater" => binary(BinaryOp::Greater),
        "greater_equal" => binary(BinaryOp::GreaterOrEqual),
        "and" => binary(BinaryOp::And),
        "or" => binary(BinaryOp::Or),
        "xor" => binary(BinaryOp::Xor),
        "where" => {
            arity(3)?;
            Ok(Op::Where { cond: args[0], a: args[1], b: args[2] })
        }
        _ => Err(format!(
            "unknown op `{name}`; ops are gemm, conv2d, add, sub, mul, div, max, min, prelu, relu, clamp, sigmoid, tanh, exp, sqrt, reciprocal, rsqrt, log, erf, gelu, gelu_tanh, leaky_relu, elu, hard_sigmoid, hard_swish, maxpool, avgpool, softmax, log_softmax, reduce_sum, reduce_mean, reduce_max, reduce_min, quantize, dequantize, sign_flip, reshape, concat, slice, pad, transpose, depth_to_space, space_to_depth, resize, equal, not_equal, less, less_equal, greater, greater_equal, and, or, xor, where"
        )),
    }
}

/// Print a graph in the text form, one op per line; `parse` gives it back.
pub fn print(g: &Graph) -> String {
    let mut s = String::new();
    let name = |v: &ValueId| g.node(*v).name.clone();
    let pair = |p: [usize; 2]| {
        if p[0] == p[1] {
            p[0].to_string()
        } else {
            format!("[{},{}]", p[0], p[1])
        }
    };
    fn nums<T: ToString>(v: &[T]) -> String {
        let items: Vec<String> = v.iter().map(T::to_string).collect();
        format!("[{}]", items.join(","))
    }
    for n in g.nodes() {
        if n.op == Op::Input {
            let _ = writeln!(s, "input {}: {}", n.name, n.ty);
            continue;
        }
        if let Op::Constant { .. } = n.op {
            // The text form has no literal tensors: say what is missing.
            let _ = writeln!(
                s,
                "# constant {}: {} (the text form cannot spell its values)",
                n.name, n.ty
            );
            continue;
        }
        // Results that choose their quantization say so (relu, clamp and
        // reshape always keep their operand's).
        let keeps = matches!(
            n.op,
            Op::Unary {
                op: UnaryOp::Relu | UnaryOp::Clamp { .. },
                ..
            } | Op::Reshape { .. }
                | Op::SignFlip { .. }
                | Op::Concat { .. }
                | Op::Slice { .. }
                | Op::Pad { .. }
                | Op::Transpose { .. }
                | Op::DepthToSpace { .. }
                | Op::SpaceToDepth { .. }
                | Op::Resize { .. }
        );
        let annot = match &n.ty.quant {
            Some(Quant::PerTensor { scale, zero_point }) if !keeps => {
                format!(": i8 q(scale={scale:?}, zp={zero_point})")
            }
            _ => String::new(),
        };
        let call = match &n.op {
            Op::Input | Op::Constant { .. } => String::new(),
            Op::Gemm {
                a,
                b,
                bias,
                trans_a,
                trans_b,
            } => {
                let mut c = format!("gemm({}, {}", name(a), name(b));
                if let Some(b) = bias {
                    let _ = write!(c, ", bias={}", name(b));
                }
                if *trans_a {
                    c.push_str(", trans_a=true");
                }
                if *trans_b {
                    c.push_str(", trans_b=true");
                }
                c + ")"
            }
            Op::Conv2d {
                input,
                weight,
                bias,
                window,
                groups,
            } => {
                let mut c = format!("conv2d({}, {}", name(input), name(weight));
                if let Some(b) = bias {
                    let _ = write!(c, ", bias={}", name(b));
                }
                let _ = write!(
                    c,
                    ", stride={}, pad={}, dilation={}, groups={groups})",
                    pair(window.stride),
                    pair(window.padding),
                    pair(window.dilation)
                );
                c
            }
            Op::Binary { op, a, b } => format!("{}({}, {})", op.name(), name(a), name(b)),
            Op::Unary {
                op: UnaryOp::Clamp { lo, hi },
                x,
            } => format!("clamp({}, lo={lo:?}, hi={hi:?})", name(x)),
            Op::Unary {
                op: UnaryOp::LeakyRelu { alpha } | UnaryOp::Elu { alpha },
                x,
            } => format!("{}({}, alpha={alpha:?})", n.op.name(), name(x)),
            Op::Unary {
                op: UnaryOp::HardSigmoid { alpha, beta } | UnaryOp::HardSwish { alpha, beta },
                x,
            } => format!(
                "{}({}, alpha={alpha:?}, beta={beta:?})",
                n.op.name(),
                name(x)
            ),
            Op::Unary { op, x } => format!("{}({})", op.name(), name(x)),
            Op::Pool {
                x, kernel, window, ..
            } => format!(
                "{}({}, kernel={}, stride={}, pad={})",
                n.op.name(),
                name(x),
                pair(*kernel),
                pair(window.stride),
                pair(window.padding)
            ),
            Op::Softmax { x, axis } => format!("softmax({}, axis={axis})", name(x)),
            Op::LogSoftmax { x, axis } => format!("log_softmax({}, axis={axis})", name(x)),
            Op::Reduce {
                kind,
                x,
                axes,
                keepdims,
            } => format!(
                "{}({}, axes=[{}], keepdims={})",
                kind.name(),
                name(x),
                axes.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                u8::from(*keepdims)
            ),
            Op::Quantize { x } => format!("quantize({})", name(x)),
            Op::Dequantize { x } => format!("dequantize({})", name(x)),
            Op::SignFlip { x } => format!("sign_flip({})", name(x)),
            Op::Cast { x, to } => format!("cast({}, to={})", name(x), to.name()),
            Op::Reshape { x, shape } => format!(
                "reshape({}, [{}])",
                name(x),
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            // Not in the text language yet: shown for reading.
            Op::BatchMatMul { a, b, trans_b } => format!(
                "batch_matmul({}, {}{})",
                name(a),
                name(b),
                if *trans_b { ", trans_b=true" } else { "" }
            ),
            Op::Gather { table, indices } => format!("gather({}, {})", name(table), name(indices)),
            Op::LayerNorm {
                x,
                scale,
                bias,
                epsilon,
            } => {
                let mut c = format!("layer_norm({}, {}", name(x), name(scale));
                if let Some(b) = bias {
                    let _ = write!(c, ", bias={}", name(b));
                }
                let _ = write!(c, ", epsilon={epsilon:?})");
                c
            }
            Op::Concat { xs, axis } => format!(
                "concat({}, axis={axis})",
                xs.iter().map(name).collect::<Vec<_>>().join(", ")
            ),
            Op::Slice {
                x,
                begin,
                step,
                shape,
            } => format!(
                "slice({}, begin={}, step={}, shape={})",
                name(x),
                nums(begin),
                nums(step),
                nums(shape)
            ),
            Op::Pad {
                x,
                begin,
                end,
                value,
                mode: PadMode::Constant,
            } => format!(
                "pad({}, begin={}, end={}, value={value:?})",
                name(x),
                nums(begin),
                nums(end)
            ),
            Op::Pad {
                x,
                begin,
                end,
                mode,
                ..
            } => format!(
                "pad({}, begin={}, end={}, mode={})",
                name(x),
                nums(begin),
                nums(end),
                mode.name()
            ),
            Op::Transpose { x, perm } => format!("transpose({}, perm={})", name(x), nums(perm)),
            Op::DepthToSpace { x, block, crd } => {
                format!("depth_to_space({}, block={block}, crd={crd})", name(x))
            }
            Op::SpaceToDepth { x, block } => {
                format!("space_to_depth({}, block={block})", name(x))
            }
            Op::Resize {
                x,
                size,
                scale,
                mode,
                coord,
            } => {
                let mode = match mode {
                    ResizeMode::Linear => "linear".to_string(),
                    ResizeMode::Nearest(r) => format!("nearest, round={}", r.name()),
                };
                format!(
                    "resize({}, size=[{},{}], scale=[{:?},{:?}], mode={mode}, coord={})",
                    name(x),
                    size[0],
                    size[1],
                    scale[0],
                    scale[1],
                    coord.name()
                )
            }
            Op::Where { cond, a, b } => {
                format!("where({}, {}, {})", name(cond), name(a), name(b))
            }
        };
        let _ = writeln!(s, "{}{annot} = {call}", n.name);
    }
    let outs: Vec<String> = g.outputs().iter().map(name).collect();
    let _ = writeln!(s, "output {}", outs.join(", "));
    s
}
