//! kselftest-style TAP: a plan, one line per test, exit 0 (pass), 1 (fail)
//! or 4 (KSFT_SKIP when everything was skipped).

pub const KSFT_PASS: i32 = 0;
pub const KSFT_FAIL: i32 = 1;
pub const KSFT_SKIP: i32 = 4;

pub struct Tap {
    planned: usize,
    n: usize,
    failed: usize,
    skipped: usize,
}

impl Tap {
    pub fn new(planned: usize) -> Self {
        println!("TAP version 13");
        println!("1..{planned}");
        Tap {
            planned,
            n: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Record one result; `Err` carries the reason of a failure.
    pub fn check(&mut self, name: &str, result: Result<(), String>) {
        self.n += 1;
        match result {
            Ok(()) => println!("ok {} {name}", self.n),
            Err(why) => {
                self.failed += 1;
                println!("# {name}: {why}");
                println!("not ok {} {name}", self.n);
            }
        }
    }

    /// The work a test point actually completed, printed before its result
    /// as `# done: TEXT` (scripts/reliability-report.sh reads these lines).
    pub fn done(&self, text: &str) {
        println!("# done: {text}");
    }

    pub fn skip(&mut self, name: &str, why: &str) {
        self.n += 1;
        self.skipped += 1;
        println!("ok {} {name} # SKIP {why}", self.n);
    }

    /// Print the totals and return the process exit code.
    pub fn finish(self) -> i32 {
        let missing = self.planned.saturating_sub(self.n);
        println!(
            "# Totals: pass:{} fail:{} skip:{}",
            self.n - self.failed - self.skipped,
            self.failed + missing,
            self.skipped
        );
        if self.failed > 0 || missing > 0 || self.n > self.planned {
            KSFT_FAIL
        } else if self.skipped == self.n && self.n > 0 {
            KSFT_SKIP
        } else {
            KSFT_PASS
        }
    }
}
