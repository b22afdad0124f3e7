//! Host-side fault injection (Documentation/hw/npu-hw.rst, "Fault
//! injection"). Rules come from `--inject KIND[:TRIGGER]` and are evaluated
//! once per job, in the order given; the first rule that fires wins.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The job never completes; only a soft reset clears it.
    Hang,
    /// The job ends with an MMU fault at address 0xdead000.
    MmuFault,
    /// The completion record is written but no interrupt is sent.
    DropIrq,
    /// The completion record carries a sequence number and status no job has.
    CorruptCompletion,
    /// The job takes this many extra milliseconds of wall time.
    Delay(u32),
    /// An extra JOB_DONE interrupt is sent without a new completion.
    SpuriousIrq,
    /// The job hangs, and the soft reset after it sets RESET_DONE this
    /// many milliseconds late (once): a driver's reset that times out.
    /// [`Injector::on_job`] reports it as [`Action::Hang`].
    HangSlowReset(u32),
}

/// Applies to soft resets rather than jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ResetDelay(pub u32);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    Always,
    /// The job executed `MARK tag`.
    Tag(u32),
    /// Every n-th job (1-based count of jobs since the device started).
    Every(u64),
    /// Exactly the n-th job.
    Nth(u64),
    /// With probability p, from a seeded generator (reproducible).
    Prob(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub action: Action,
    pub trigger: Trigger,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad --inject rule '{rule}': {why}")]
pub struct RuleError {
    rule: String,
    why: String,
}

/// Parsed rules plus the state they need.
#[derive(Default)]
pub struct Injector {
    rules: Vec<Rule>,
    /// The rule texts, for `list` on the control socket.
    specs: Vec<String>,
    pub reset_delay: ResetDelay,
    /// The delay of the next soft reset only (hang-slow-reset), taking
    /// precedence over `reset_delay`.
    next_reset_delay: Option<u32>,
    rng: u64,
    jobs: u64,
}

const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl Injector {
    /// Parse rules like `hang:tag=3`, `drop-irq:every=5`, `delay=200:nth=2`,
    /// `mmu-fault:prob=0.1,seed=7`, `slow-reset=500`, and `seed=N`.
    pub fn parse(specs: &[String]) -> Result<Self, RuleError> {
        let mut inj = Injector {
            rng: DEFAULT_SEED,
            ..Default::default()
        };
        for spec in specs {
            inj.add(spec)?;
        }
        Ok(inj)
    }

    /// Add one rule (also used by the control socket at run time).
    pub fn add(&mut self, spec: &str) -> Result<(), RuleError> {
        let err = |why: &str| RuleError {
            rule: spec.to_string(),
            why: why.into(),
        };
        if self.rng == 0 {
            self.rng = DEFAULT_SEED;
        }
        let (kind, trig) = match spec.split_once(':') {
            Some((k, t)) => (k, Some(t)),
            None => (spec, None),
        };
        let (name, value) = match kind.split_once('=') {
            Some((n, v)) => (
                n,
                Some(v.parse::<u64>().map_err(|_| err("value is not a number"))?),
            ),
            None => (kind, None),
        };
        let action = match (name, value) {
            ("seed", Some(v)) => {
                self.rng = v.max(1);
                return Ok(());
            }
            ("slow-reset", Some(ms)) => {
                self.reset_delay = ResetDelay(u32::try_from(ms).map_err(|_| err("delay too large"))?);
                self.specs.push(spec.to_string());
                return Ok(());
            }
            ("hang", None) => Action::Hang,
            ("mmu-fault", None) => Action::MmuFault,
            ("drop-irq", None) => Action::DropIrq,
            ("corrupt-completion", None) => Action::CorruptCompletion,
            ("spurious-irq", None) => Action::SpuriousIrq,
            ("delay", Some(ms)) => Action::Delay(u32::try_from(ms).map_err(|_| err("delay too large"))?),
            ("hang-slow-reset", Some(ms)) => Action::HangSlowReset(u32::try_from(ms).map_err(|_| err("delay too large"))?),
            _ => return Err(err("unknown kind (hang, mmu-fault, drop-irq, corrupt-completion, spurious-irq, delay=MS, hang-slow-reset=MS, slow-reset=MS, seed=N)")),
        };
        let trigger = match trig {
            None => Trigger::Always,
            Some(t) => {
                // `prob=P,seed=S`: the seed is part of the trigger text.
                let (t, seed) = match t.split_once(",seed=") {
                    Some((t, s)) => (
                        t,
                        Some(s.parse::<u64>().map_err(|_| err("seed is not a number"))?),
                    ),
                    None => (t, None),
                };
                let (k, v) = t
                    .split_once('=')
                    .ok_or_else(|| err("trigger must be KEY=VALUE"))?;
                let num = || {
                    v.parse::<u64>()
                        .map_err(|_| err("trigger value is not a number"))
                };
                let trigger = match k {
                    "tag" => Trigger::Tag(u32::try_from(num()?).map_err(|_| err("tag too large"))?),
                    "every" if num()? > 0 => Trigger::Every(num()?),
                    "nth" if num()? > 0 => Trigger::Nth(num()?),
                    "prob" => match v.parse::<f64>() {
                        Ok(p) if (0.0..=1.0).contains(&p) => Trigger::Prob(p),
                        _ => return Err(err("prob must be in [0, 1]")),
                    },
                    _ => {
                        return Err(err(
                            "unknown trigger (tag=N, every=N, nth=N, prob=P[,seed=S])",
                        ))
                    }
                };
                if let Some(s) = seed {
                    if !matches!(trigger, Trigger::Prob(_)) {
                        return Err(err("seed= only goes with prob="));
                    }
                    self.rng = s.max(1);
                }
                trigger
            }
        };
        self.rules.push(Rule { action, trigger });
        self.specs.push(spec.to_string());
        Ok(())
    }

    /// Disarm every rule (the job counter keeps counting).
    pub fn clear(&mut self) {
        self.rules.clear();
        self.specs.clear();
        self.reset_delay = ResetDelay(0);
        self.next_reset_delay = None;
    }

    /// The delay of a soft reset starting now, in milliseconds (0: none):
    /// a pending hang-slow-reset's, used up by this reset, else the
    /// slow-reset rule's.
    pub fn take_reset_delay(&mut self) -> u32 {
        self.next_reset_delay.take().unwrap_or(self.reset_delay.0)
    }

    /// The armed rules as given.
    pub fn specs(&self) -> &[String] {
        &self.specs
    }

    pub fn is_armed(&self) -> bool {
        !self.rules.is_empty() || self.reset_delay.0 > 0
    }

    /// Decide the injected action (if any) for the job that just ran.
    /// Jobs counted so far (what `every=` and `nth=` count): tests wait on
    /// it to know the CP has finished executing a job.
    pub fn jobs(&self) -> u64 {
        self.jobs
    }

    pub fn on_job(&mut self, marks: &[u32]) -> Option<Action> {
        self.jobs += 1;
        let jobs = self.jobs;
        let mut fired = None;
        for i in 0..self.rules.len() {
            let rule = self.rules[i].clone();
            let hit = match rule.trigger {
                Trigger::Always => true,
                Trigger::Tag(t) => marks.contains(&t),
                Trigger::Every(n) => jobs.is_multiple_of(n),
                Trigger::Nth(n) => jobs == n,
                Trigger::Prob(p) => (self.next_random() as f64 / u64::MAX as f64) < p,
            };
            if hit && fired.is_none() {
                fired = Some(rule.action);
            }
        }
        if let Some(Action::HangSlowReset(ms)) = fired {
            self.next_reset_delay = Some(ms);
            return Some(Action::Hang);
        }
        fired
    }

    // xorshift64*: tiny, reproducible from the seed.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One line of the control-socket protocol (Documentation/hw/npu-hw.rst,
/// "Fault injection"): `inject RULE`, `clear`, `list`. Returns the reply
/// line: `ok`, `ok RULE;RULE...` or `error: why`.
pub fn control_line(inj: &mut Injector, line: &str) -> String {
    let line = line.trim();
    let (cmd, arg) = line
        .split_once(' ')
        .map(|(c, a)| (c, a.trim()))
        .unwrap_or((line, ""));
    match (cmd, arg) {
        ("inject", rule) if !rule.is_empty() => match inj.add(rule) {
            Ok(()) => "ok".into(),
            Err(e) => format!("error: {e}"),
        },
        ("clear", "") => {
            inj.clear();
            "ok".into()
        }
        ("list", "") => format!("ok {}", inj.specs().join(";"))
            .trim_end()
            .to_string(),
        _ => "error: unknown command (inject RULE, clear, list)".into(),
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hang_slow_reset_hangs_the_job_and_slows_only_the_next_reset() {
        let mut inj = Injector::parse(&["hang-slow-reset=3000:tag=7".to_string()]).unwrap();
        assert!(inj.is_armed());
        assert_eq!(inj.take_reset_delay(), 0, "no reset is slow before the job");
        assert_eq!(inj.on_job(&[1]), None);
        assert_eq!(inj.on_job(&[7]), Some(Action::Hang));
        assert_eq!(inj.take_reset_delay(), 3000);
        assert_eq!(
            inj.take_reset_delay(),
            0,
            "only the reset after the job is slow"
        );
    }

    #[test]
    fn hang_slow_reset_needs_a_delay() {
        assert!(Injector::parse(&["hang-slow-reset".to_string()]).is_err());
        assert!(Injector::parse(&["hang-slow-reset=x".to_string()]).is_err());
    }

    #[test]
    fn slow_reset_stays_for_every_reset() {
        let mut inj = Injector::parse(&["slow-reset=200".to_string()]).unwrap();
        assert_eq!(inj.take_reset_delay(), 200);
        assert_eq!(inj.take_reset_delay(), 200);
    }
}
