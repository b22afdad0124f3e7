//! Command lines of the guest tests: positional numbers with defaults and
//! `--flags`; anything else is a clear error and exit status 2.

/// The arguments after the program name, split into flags and the rest.
pub struct Args {
    program: String,
    usage: &'static str,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Args {
    /// Parse std::env::args(); `known` lists the flags the program takes.
    pub fn parse(usage: &'static str, known: &[&str]) -> Args {
        let mut all = std::env::args();
        let program = all.next().unwrap_or_default();
        let (flags, positional): (Vec<String>, Vec<String>) =
            all.partition(|a| a.starts_with("--"));
        let args = Args {
            program,
            usage,
            flags,
            positional,
        };
        if let Some(bad) = args.flags.iter().find(|f| !known.contains(&f.as_str())) {
            args.fail(&format!("unknown option {bad}"));
        }
        args
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// Positional argument `i` (from 0) as a number, `default` if absent.
    pub fn number(&self, i: usize, name: &str, default: u64) -> u64 {
        match self.positional.get(i) {
            None => default,
            Some(s) => s
                .parse()
                .unwrap_or_else(|_| self.fail(&format!("{name} must be a number, not {s:?}"))),
        }
    }

    /// No more than `n` positional arguments.
    pub fn at_most(&self, n: usize) {
        if self.positional.len() > n {
            self.fail(&format!("unexpected argument {:?}", self.positional[n]));
        }
    }

    pub fn fail(&self, why: &str) -> ! {
        eprintln!(
            "{}: {why}\nusage: {} {}",
            self.program, self.program, self.usage
        );
        std::process::exit(2)
    }
}
