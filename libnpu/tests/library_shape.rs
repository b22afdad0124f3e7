//! What a runtime linking libnpu gets: with the default features, none of
//! the device model's crates (the emulated device, vfio-user, guest
//! memory, its logging and parsing); with `model`, the device model.

use std::process::Command;

/// The crates `cargo tree` lists for libnpu's normal dependencies.
fn crates(features: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "libnpu",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    names.sort();
    names.dedup();
    names
}

const DEVICE_MODEL: [&str; 6] = [
    "npu-device",
    "vfio_user",
    "vm-memory",
    "env_logger",
    "regex",
    "serde_json",
];

#[test]
fn default_features_leave_the_device_model_out() {
    let default = crates(&[]);
    for c in DEVICE_MODEL {
        assert!(!default.contains(&c.to_string()), "{c} in {default:?}");
    }
    assert!(default.len() <= 20, "{} crates: {default:?}", default.len());
    // The same query sees the device model when it is asked for.
    let model = crates(&["--features", "model"]);
    for c in ["npu-device", "vfio_user", "vm-memory"] {
        assert!(model.contains(&c.to_string()), "{c} not in {model:?}");
    }
}
