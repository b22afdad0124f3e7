//! The driver's debugfs files: the DRM device's directory,
//! /sys/kernel/debug/accel/<pci name>/ (Documentation/uapi/onpu.rst,
//! "debugfs"), found from an accel node.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/kernel/debug/accel";

/// The debugfs directory of the device behind `node` (/dev/accel/accelN):
/// named after its PCI device, which /sys/class/accel/accelN/device names.
pub fn dir_of(node: &Path) -> Result<PathBuf, String> {
    let name = node
        .file_name()
        .ok_or_else(|| format!("{}: not a device node", node.display()))?;
    let class = Path::new("/sys/class/accel").join(name).join("device");
    let pci = std::fs::canonicalize(&class).map_err(|e| format!("{}: {e}", class.display()))?;
    let pci = pci
        .file_name()
        .ok_or_else(|| format!("{}: no device name", class.display()))?;
    let dir = Path::new(ROOT).join(pci);
    if !dir.is_dir() {
        return Err(format!(
            "{} is missing (is debugfs mounted?)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The debugfs directory of the first onpu device.
pub fn dir() -> Result<PathBuf, String> {
    let node = npu::device::raw::find_device().map_err(|e| e.to_string())?;
    dir_of(&node)
}

/// One `name: value` line of `counters`.
pub fn counter_in(dir: &Path, name: &str) -> Result<u64, String> {
    let path = dir.join("counters");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_counter(&text, name).ok_or_else(|| format!("{}: no '{name}' line", path.display()))
}

/// A counter of the first onpu device.
pub fn counter(name: &str) -> Result<u64, String> {
    counter_in(&dir()?, name)
}

/// The value of the `name: value` line of a `counters` text.
pub fn parse_counter(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == name)
        .and_then(|(_, v)| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::parse_counter;

    #[test]
    fn counters_lines_parse() {
        let text = "jobs_submitted: 12\njobs_completed: 11\nresets: 0\nring_error_last: 0x0 0x0\n";
        assert_eq!(parse_counter(text, "jobs_submitted"), Some(12));
        assert_eq!(parse_counter(text, "resets"), Some(0));
        assert_eq!(parse_counter(text, "jobs"), None);
        assert_eq!(parse_counter(text, "ring_error_last"), None);
    }
}
