//! Child processes for the multi-process tests: a fork whose failure is an
//! error, SIGKILL and reaping by that child's pid only, one-byte pipe
//! notifications (events, not sleeps), and counters shared across fork.

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, ForkResult, Pid};
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// A forked child, killed and reaped on drop if the test did not reap it.
pub struct Child {
    pid: Pid,
    reaped: bool,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "killed by {s}"),
        }
    }
}

/// Fork; the child runs `f` and exits with its result (101 if it panics)
/// without running the parent's destructors or returning into its code.
/// Call it while the process has a single thread.
pub fn spawn(f: impl FnOnce() -> i32) -> Result<Child, String> {
    // SAFETY: the tests fork from a single thread; the child only runs `f`
    // and leaves through _exit.
    match unsafe { unistd::fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Parent { child }) => Ok(Child {
            pid: child,
            reaped: false,
        }),
        Ok(ForkResult::Child) => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            // SAFETY: leave the child without the parent's destructors or
            // atexit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// SIGKILL this child (and nothing else: the pid is a real child's).
    pub fn kill(&self) -> Result<(), String> {
        signal::kill(self.pid, Signal::SIGKILL).map_err(|e| format!("kill {}: {e}", self.pid))
    }

    /// Wait for the child to end.
    pub fn wait(mut self) -> Result<Exit, String> {
        self.reaped = true;
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Exit::Signal(sig)),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("waitpid {}: {e}", self.pid)),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = signal::kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// A pipe for one-byte notifications: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    unistd::pipe().map_err(|e| format!("pipe: {e}"))
}

/// Tell the other end something happened.
pub fn notify(w: &OwnedFd) -> Result<(), String> {
    match unistd::write(w, &[1]) {
        Ok(1) => Ok(()),
        Ok(_) => Err("notify: short write".into()),
        Err(e) => Err(format!("notify: {e}")),
    }
}

/// Block until notified (true) or until every write end is closed, e.g.
/// because the child died (false).
pub fn wait_notified(r: &OwnedFd) -> Result<bool, String> {
    let mut b = [0u8; 1];
    loop {
        match unistd::read(r, &mut b) {
            Ok(n) => return Ok(n == 1),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// `N` counters in memory shared with every child forked after it exists.
pub struct Counters<const N: usize> {
    ptr: NonNull<[AtomicU64; N]>,
}

impl<const N: usize> Counters<N> {
    pub fn new() -> Result<Self, String> {
        use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
        let len = std::num::NonZeroUsize::new(std::mem::size_of::<[AtomicU64; N]>().max(1))
            .ok_or("empty")?;
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        // Zero-filled pages are N valid AtomicU64s of value 0.
        Ok(Counters { ptr: p.cast() })
    }

    pub fn get(&self, i: usize) -> &AtomicU64 {
        // SAFETY: the mapping lives as long as `self` and holds N atomics,
        // which are safe to share between threads and processes.
        unsafe { &self.ptr.as_ref()[i] }
    }
}

impl<const N: usize> Drop for Counters<N> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no reference from
        // `get` outlives `self`.
        unsafe {
            let _ = nix::sys::mman::munmap(
                self.ptr.cast(),
                std::mem::size_of::<[AtomicU64; N]>().max(1),
            );
        }
    }
}
