//! The kernel's fault-injection knobs (Documentation/fault-injection/ of the
//! kernel: failslab and fail_page_alloc, debug kernel only) set up for the
//! tests: nothing fails by probability or interval, only the calling
//! task's fail-nth count (or make-it-fail with knobs a test sets itself)
//! injects; every knob is put back as it was when the [`FaultKnobs`] are
//! dropped.

use std::path::{Path, PathBuf};

/// The fault capabilities the tests aim: slab and page allocations.
pub const CAPABILITIES: [&str; 2] = ["failslab", "fail_page_alloc"];

/// The knobs of [`CAPABILITIES`] as the tests need them, restored on drop.
pub struct FaultKnobs {
    saved: Vec<(PathBuf, String)>,
}

impl FaultKnobs {
    /// Aim failslab and fail_page_alloc at a task's fail-nth count alone.
    /// An error names what is missing (not the debug kernel).
    pub fn new() -> Result<FaultKnobs, String> {
        let mut knobs = FaultKnobs { saved: Vec::new() };
        for cap in CAPABILITIES {
            let dir = Path::new("/sys/kernel/debug").join(cap);
            if !dir.is_dir() {
                return Err(format!(
                    "{} is missing: not the debug kernel (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC, CONFIG_FAULT_INJECTION_DEBUG_FS)",
                    dir.display()
                ));
            }
            for (knob, value) in [
                // Nothing fails through probability/interval (probability
                // 0, and only tasks with make-it-fail): the fail-nth count
                // injects.
                ("probability", "0"),
                ("task-filter", "Y"),
                ("interval", "1"),
                ("times", "-1"),
                ("space", "0"),
                // One line per injected failure (2 would print a call
                // trace, which the harness takes for a kernel report).
                ("verbose", "1"),
                // GFP_KERNEL allocations too (the default skips them).
                ("ignore-gfp-wait", "N"),
            ] {
                knobs.set(&dir, knob, value)?;
            }
        }
        // Single pages and user/shmem pages (__GFP_HIGHMEM) too.
        let pages = Path::new("/sys/kernel/debug/fail_page_alloc");
        knobs.set(pages, "min-order", "0")?;
        knobs.set(pages, "ignore-gfp-highmem", "N")?;
        Ok(knobs)
    }

    /// Set `dir/knob` to `value`, remembering its old value for the drop.
    pub fn set(&mut self, dir: &Path, knob: &str, value: &str) -> Result<(), String> {
        let path = dir.join(knob);
        let old = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, value).map_err(|e| format!("{} = {value}: {e}", path.display()))?;
        self.saved.push((path, old.trim().to_string()));
        Ok(())
    }
}

impl Drop for FaultKnobs {
    fn drop(&mut self) {
        for (path, value) in self.saved.iter().rev() {
            if let Err(e) = std::fs::write(path, value) {
                eprintln!("restoring {}: {e}", path.display());
            }
        }
    }
}
