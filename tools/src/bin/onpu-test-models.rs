//! Selftest: real published models through /dev/accel, compared with
//! onnxruntime. `onpu-test-models DIR` reads DIR/manifest.txt (written on
//! the host by scripts/guest-models.py: each model, its fixed inputs and
//! onnxruntime's outputs on them), runs every model with
//! `npu-submit MODEL --input ... --dump DIR` and compares each dumped output
//! with onnxruntime's, element by element as numpy.isclose does:
//! |npu - ort| <= ATOL + RTOL * |ort|, with the model's tolerance (the host
//! tests', onnx/tests/real_models.rs says why). One test point per model,
//! printing the largest absolute and relative errors; a last point checks
//! that the comparison fails on deliberately wrong expected outputs.

use npu_tools::tap::Tap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One manifest line.
struct Case {
    name: String,
    atol: f32,
    rtol: f32,
    args: Vec<String>,
    /// (file npu-submit --dump writes, onnxruntime's output file)
    outputs: Vec<(String, String)>,
}

fn parse_manifest(text: &str) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = |why: &str| format!("manifest line {}: {why}: `{line}`", i + 1);
        if f.len() != 6 {
            return Err(bad("want 6 tab-separated fields"));
        }
        let tol = |s: &str| {
            s.parse::<f32>()
                .map_err(|_| bad("a tolerance is not a number"))
        };
        let outputs = f[5]
            .split(',')
            .map(|p| {
                p.split_once('=')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad("outputs: want DUMP_FILE=EXPECTED_FILE"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        cases.push(Case {
            name: f[0].to_string(),
            atol: tol(f[2])?,
            rtol: tol(f[3])?,
            args: f[4].split(' ').map(str::to_string).collect(),
            outputs,
        });
    }
    Ok(cases)
}

fn read_f32(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "{}: {} bytes is not a whole number of f32",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// How far `got` is from `want`.
#[derive(Debug)]
struct Diff {
    max_abs: f32,
    max_rel: f32,
    mismatches: usize,
    /// The first element outside the tolerance: (index, got, want).
    first: Option<(usize, f32, f32)>,
}

/// numpy.isclose's rule, |got - want| <= atol + rtol * |want|; a NaN on
/// either side never passes. Errors on a length mismatch.
fn compare(got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Result<Diff, String> {
    if got.len() != want.len() {
        return Err(format!(
            "the NPU gave {} values, onnxruntime {}",
            got.len(),
            want.len()
        ));
    }
    let mut d = Diff {
        max_abs: 0.0,
        max_rel: 0.0,
        mismatches: 0,
        first: None,
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let abs = (g - w).abs();
        let rel = abs / w.abs().max(1e-6);
        let close = abs <= atol + rtol * w.abs(); // false for a NaN
        if !close {
            d.mismatches += 1;
            d.first.get_or_insert((i, g, w));
        }
        if abs.is_nan() || abs > d.max_abs {
            d.max_abs = abs;
        }
        if rel.is_nan() || rel > d.max_rel {
            d.max_rel = rel;
        }
    }
    Ok(d)
}

fn describe(d: &Diff, n: usize) -> String {
    format!(
        "max_abs={:.3e} max_rel={:.3e} mismatches={}/{n}",
        d.max_abs, d.max_rel, d.mismatches
    )
}

/// Run one model through npu-submit and compare its outputs.
fn run_case(dir: &Path, case: &Case) -> Result<(), String> {
    let dump = PathBuf::from("/tmp/onpu-test-models").join(&case.name);
    let _ = std::fs::remove_dir_all(&dump);
    let out = Command::new("npu-submit")
        .args(&case.args)
        .arg("--dump")
        .arg(&dump)
        .output()
        .map_err(|e| format!("cannot run npu-submit: {e}"))?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| l.starts_with("device:") || l.starts_with("npu-submit:"))
    {
        println!("# {}: {line}", case.name);
    }
    if !out.status.success() {
        return Err(format!(
            "npu-submit {} failed ({}): {}",
            case.args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut bad = Vec::new();
    for (dumped, expected) in &case.outputs {
        let got = read_f32(&dump.join(dumped))?;
        let want = read_f32(&dir.join(expected))?;
        let d = compare(&got, &want, case.atol, case.rtol)?;
        println!(
            "# {} {}: {} (atol {:e}, rtol {:e})",
            case.name,
            dumped
                .trim_end_matches(".bin")
                .chars()
                .take(40)
                .collect::<String>(),
            describe(&d, got.len()),
            case.atol,
            case.rtol
        );
        if let Some((i, g, w)) = d.first {
            bad.push(format!(
                "{dumped}: {} outside the tolerance, first at {i}: NPU {g:e}, onnxruntime {w:e}",
                d.mismatches
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// The comparison must catch wrong expected outputs: the first case's own
/// NPU output against onnxruntime's with one value moved by twice its
/// tolerance, and with one value NaN; and pass it against itself.
fn check_comparer(dir: &Path, case: &Case) -> Result<(), String> {
    let (dumped, expected) = &case.outputs[0];
    let got = read_f32(
        &PathBuf::from("/tmp/onpu-test-models")
            .join(&case.name)
            .join(dumped),
    )?;
    let want = read_f32(&dir.join(expected))?;
    let same = compare(&got, &got, case.atol, case.rtol)?;
    if same.mismatches != 0 {
        return Err(format!("an output differs from itself: {same:?}"));
    }
    let mut wrong = want.clone();
    let i = wrong.len() / 2;
    wrong[i] += 2.0 * (case.atol + case.rtol * wrong[i].abs());
    std::fs::write(
        "/tmp/onpu-test-models/wrong.bin",
        wrong
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .map_err(|e| format!("/tmp/onpu-test-models/wrong.bin: {e}"))?;
    let wrong = read_f32(Path::new("/tmp/onpu-test-models/wrong.bin"))?;
    let d = compare(&got, &wrong, case.atol, case.rtol)?;
    println!(
        "# {} against a wrong expected file: {}",
        case.name,
        describe(&d, got.len())
    );
    if d.mismatches == 0 {
        return Err(format!(
            "value {i} moved by 2x the tolerance was not detected"
        ));
    }
    let mut nan = want.clone();
    nan[0] = f32::NAN;
    if compare(&got, &nan, case.atol, case.rtol)?.mismatches == 0 {
        return Err("a NaN expected value was not detected".into());
    }
    if compare(&got, &want[1..], case.atol, case.rtol).is_ok() {
        return Err("a short expected file was not detected".into());
    }
    Ok(())
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/models".into()));
    let manifest = dir.join("manifest.txt");
    let cases = match std::fs::read_to_string(&manifest)
        .map_err(|e| {
            format!(
                "{}: {e} (scripts/guest-models.sh stages it)",
                manifest.display()
            )
        })
        .and_then(|t| parse_manifest(&t))
    {
        Ok(c) if !c.is_empty() => c,
        r => {
            let mut tap = Tap::new(1);
            let why = r
                .err()
                .unwrap_or_else(|| format!("{}: no models", manifest.display()));
            tap.check("the models' manifest", Err(why));
            std::process::exit(tap.finish());
        }
    };
    let mut tap = Tap::new(cases.len() + 1);
    for case in &cases {
        let r = run_case(&dir, case);
        tap.check(&format!("{} on the NPU matches onnxruntime", case.name), r);
    }
    tap.check(
        "the comparison detects a wrong expected output",
        check_comparer(&dir, &cases[0]),
    );
    std::process::exit(tap.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isclose_rule() {
        // |1.1 - 1| = 0.1 <= 0.05 + 0.1 * 1 passes; 1.2 does not.
        assert_eq!(compare(&[1.1], &[1.0], 0.05, 0.1).unwrap().mismatches, 0);
        assert_eq!(compare(&[1.2], &[1.0], 0.05, 0.1).unwrap().mismatches, 1);
        assert_eq!(
            compare(&[f32::NAN], &[1.0], 1.0, 1.0).unwrap().mismatches,
            1
        );
        assert!(compare(&[1.0, 2.0], &[1.0], 1.0, 1.0).is_err());
        let d = compare(&[0.0, 3.0], &[0.5, 2.0], 0.0, 0.0).unwrap();
        assert_eq!(
            (d.max_abs, d.max_rel, d.first),
            (1.0, 1.0, Some((0, 0.0, 0.5)))
        );
    }

    #[test]
    fn manifest_lines() {
        let c = parse_manifest(
            "m\tm.onnx\t1e-05\t0.0001\t/models/m.onnx --no-check\ty.bin=m.out0.bin\n",
        )
        .unwrap();
        assert_eq!(c[0].args, ["/models/m.onnx", "--no-check"]);
        assert_eq!(
            c[0].outputs,
            [("y.bin".to_string(), "m.out0.bin".to_string())]
        );
        assert_eq!((c[0].atol, c[0].rtol), (1e-5, 1e-4));
        assert!(parse_manifest("m\tm.onnx\tx\t1\ta\tb=c\n").is_err());
        assert!(parse_manifest("m\tm.onnx\t1\t1\ta\n").is_err());
    }
}
