// SPDX-License-Identifier: GPL-2.0-only

//! The job scheduler: per-queue job lists between SUBMIT and the ring
//! (Documentation/driver/onpu.rst, "Scheduling").
//!
//! SUBMIT validates a job, takes its references, allocates everything it
//! will need (the job, its fence, the callbacks on its dependencies, the
//! timeline chain nodes), publishes its fence and appends it to its queue.
//! It never waits for a fence. A job is ready when every fence it depends on
//! (its input syncobjs and the implicit fences of its objects) has signalled:
//! a [`FenceCallback`] per unsignalled fence counts them down and, at zero,
//! queues the scheduler work. The scheduler pass moves the ready head job of
//! each queue into the ring, strict priority between priorities and
//! round-robin between the queues of one priority, as long as the ring has
//! room.
//!
//! Jobs of one queue enter the ring in submission order (only a queue's
//! head may), so the fences of a queue's timeline signal in order; a job
//! depending on an earlier job of its own queue needs no callback.
//!
//! Locking (after the queue's `submit` mutex, which SUBMIT holds while it
//! allocates and takes reservation locks): the scheduler's `list` mutex,
//! then a queue's `pending` mutex, then the engine's ring state. The pass
//! runs in a fence signalling section: nothing under these locks allocates,
//! waits for a fence or takes a reservation lock. Fence callbacks take none
//! of them: they count down and queue work.

use kernel::{
    dma_fence::{Fence, FenceCallback, FenceCallbackHandler, FenceContext, FenceNames},
    drm::syncobj::SyncObj,
    new_mutex,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
};

use crate::engine::Engine;
use crate::fence::Signalling;
use crate::inflight::NotEntered;
use crate::job::{Job, Outcome};
use crate::ring::RING_ENTRIES;
use crate::uapi;

/// Most jobs of a priority in the ring while a queue of a higher priority
/// exists (as drm_sched's credit limit): enough to keep the device busy,
/// few enough that the higher priority's next job overtakes what still
/// waits in the scheduler. Without a higher queue, the ring's whole depth.
const RING_DEPTH: usize = 8;

/// The names of a queue's fences.
pub(crate) struct QueueFences;

impl FenceNames for QueueFences {
    const DRIVER_NAME: &'static CStr = c"onpu";
    const TIMELINE_NAME: &'static CStr = c"onpu-queue";
}

/// How many fences (and syncobj points without a fence yet) a job still
/// waits for; the callbacks count it down.
pub(crate) struct Deps {
    pub(crate) left: Atomic<u32>,
    engine: Arc<Engine>,
}

impl Deps {
    pub(crate) fn new(engine: Arc<Engine>) -> Result<Arc<Self>> {
        Ok(Arc::new(
            Self {
                left: Atomic::new(0),
                engine,
            },
            GFP_KERNEL,
        )?)
    }

    /// One dependency less; the scheduler runs when it was the last.
    pub(crate) fn done(&self) {
        if self.left.fetch_sub(1u32, Relaxed) == 1 {
            self.engine.kick_scheduler();
        }
    }
}

/// The handler of a job's dependency callbacks.
pub(crate) struct DepWaker(pub(crate) Arc<Deps>);

impl FenceCallbackHandler for DepWaker {
    fn signalled(&self) {
        // Signalling context: an atomic and queue_work() only.
        self.0.done();
    }
}

pub(crate) type DepCallback = FenceCallback<DepWaker>;

/// An input syncobj point that had no fence at SUBMIT
/// (DRM_ONPU_SYNC_WAIT_FOR_SUBMIT), with the callback to register once it
/// has one.
pub(crate) struct Unattached {
    pub(crate) syncobj: SyncObj,
    pub(crate) point: u64,
    pub(crate) cb: Pin<KBox<DepCallback>>,
    /// A fence was found (and `cb` registered on it), or the job gave the
    /// point up (its queue was destroyed): not looked for any more.
    pub(crate) attached: bool,
}

/// A queue's jobs that have not entered the ring yet, oldest first.
struct Pending {
    /// Capacity DRM_ONPU_MAX_QUEUE_JOBS, allocated with the queue: the
    /// queue's limit of jobs not yet ended keeps it within.
    jobs: KVec<Arc<Job>>,
    /// The fence of the newest job of the queue that entered the ring (or
    /// was retired without it): a job that failed at SUBMIT is signalled
    /// only after it, to keep the timeline in order.
    last: Option<ARef<Fence>>,
}

/// The scheduler's side of a queue: its timeline and its pending jobs.
#[pin_data]
pub(crate) struct SchedQueue {
    pub(crate) priority: u32,
    pub(crate) fences: FenceContext<QueueFences>,
    /// Jobs of the queue that have not ended (DRM_ONPU_MAX_QUEUE_JOBS).
    pub(crate) active: Atomic<u32>,
    /// QUEUE_DESTROY (or the file's close) happened: the scheduler drops
    /// the queue once its last job entered the ring.
    destroyed: Atomic<bool>,
    /// The next fence sequence number; held by a submitter from taking
    /// one to appending the job, so the list is in fence order.
    #[pin]
    pub(crate) submit: Mutex<u64>,
    #[pin]
    pending: Mutex<Pending>,
}

impl SchedQueue {
    pub(crate) fn new(priority: u32) -> Result<Arc<Self>> {
        let jobs = KVec::with_capacity(uapi::DRM_ONPU_MAX_QUEUE_JOBS as usize, GFP_KERNEL)?;
        Arc::pin_init(
            try_pin_init!(Self {
                priority,
                fences: FenceContext::new(),
                active: Atomic::new(0),
                destroyed: Atomic::new(false),
                submit <- new_mutex!(1),
                pending <- new_mutex!(Pending { jobs, last: None }),
            }),
            GFP_KERNEL,
        )
    }

    /// QUEUE_DESTROY or the file's close: the queue takes no more jobs.
    /// Its jobs still waiting for an input point with no fence are
    /// cancelled: a point may stay without a fence for ever, and the job's
    /// fence must not wait for it once nobody can still wait for the job
    /// through its queue. The others still run. The caller runs a pass.
    pub(crate) fn destroy(&self) {
        self.destroyed.store(true, Relaxed);
        let pending = self.pending.lock();
        for job in pending.jobs.iter() {
            job.cancel_if_unattached();
        }
    }
}

/// The queues of the device.
pub(crate) struct SchedList {
    queues: KVec<Arc<SchedQueue>>,
    /// Per priority: where the next round-robin turn starts.
    next: [usize; uapi::DRM_ONPU_PRIORITY_REALTIME as usize + 1],
}

impl SchedList {
    pub(crate) fn new() -> Self {
        Self {
            queues: KVec::new(),
            next: [0; uapi::DRM_ONPU_PRIORITY_REALTIME as usize + 1],
        }
    }
}

impl Engine {
    /// Make `queue` known to the scheduler. The list grows outside its
    /// lock (the lock is taken in signalling sections).
    pub(crate) fn add_queue(&self, queue: Arc<SchedQueue>) -> Result {
        let mut queue = Some(queue);
        loop {
            let want = {
                let mut list = self.sched.lock();
                match list
                    .queues
                    .push_within_capacity(queue.take().ok_or(EINVAL)?)
                {
                    Ok(()) => return Ok(()),
                    Err(e) => queue = Some(e.0),
                }
                list.queues.capacity() * 2 + 4
            };
            let mut bigger = KVec::with_capacity(want, GFP_KERNEL)?;
            let old = {
                let mut list = self.sched.lock();
                if list.queues.capacity() >= want {
                    continue;
                }
                // Within the new capacity: moves, no allocation.
                for q in list.queues.drain_all() {
                    let _ = bigger.push_within_capacity(q);
                }
                core::mem::replace(&mut list.queues, bigger)
            };
            drop(old);
        }
    }

    /// QUEUE_CREATE made a queue of `priority` (at most REALTIME).
    pub(crate) fn queue_made(&self, priority: u32) {
        if let Some(n) = self.queues_by_priority.get(priority as usize) {
            n.add(1u32, Relaxed);
        }
    }

    /// A queue of `priority` was destroyed (or its file closed).
    pub(crate) fn queue_gone(&self, priority: u32) {
        if let Some(n) = self.queues_by_priority.get(priority as usize) {
            n.fetch_sub(1u32, Relaxed);
        }
    }

    /// How many jobs of a queue of `priority` may be in the ring when one
    /// more of it enters: the ring's whole depth, unless a queue of a higher
    /// priority exists; then the credit limit, so that its next job finds at
    /// most that many of ours ahead of it.
    fn ring_depth(&self, priority: u32) -> usize {
        let higher = (priority as usize + 1..self.queues_by_priority.len())
            .any(|p| self.queues_by_priority[p].load(Relaxed) != 0);
        if higher {
            RING_DEPTH
        } else {
            RING_ENTRIES as usize
        }
    }

    /// SUBMIT hands its job over (the queue's submit mutex held, so the
    /// queue's jobs come in fence order). The fast path: a job that waits
    /// for nothing, of a queue with nothing pending, goes straight into the
    /// ring without a scheduler pass, unless a pass left ready jobs behind
    /// for want of room (`sched_blocked`: they go first, in the pass's
    /// order). Jobs of other queues that wait for their dependencies do not
    /// hold it back: queues are not ordered among themselves. Otherwise it
    /// joins its queue's list; Ok(true) asks the caller for a pass (after
    /// the mutex). Err(job) when unbind took the list away.
    pub(crate) fn submit_job(
        self: &Arc<Self>,
        q: &SchedQueue,
        job: Arc<Job>,
    ) -> core::result::Result<bool, Arc<Job>> {
        // The ring write is part of the job's fence signalling path.
        let _signalling = Signalling::begin();
        let mut pending = q.pending.lock();
        let ready = job.deps_left() == 0 && job.failed().is_none();
        let mut job = job;
        if ready && pending.jobs.is_empty() && !self.sched_blocked.load(Relaxed) {
            let fence = ARef::from(&*job.fence);
            match self.enter_ring(job, self.ring_depth(q.priority)) {
                Ok(()) => {
                    self.counters.fast_path.add(1, Relaxed);
                    pending.last = Some(fence);
                    return Ok(false);
                }
                // No room, no slot, or stopped: the scheduler sees to it.
                Err(NotEntered::NoRoom(j) | NotEntered::Stopped(j)) => job = j,
            }
        }
        // Within the capacity: the limit of jobs not yet ended rules a full
        // list out; a list unbind took away has none.
        pending.jobs.push_within_capacity(job).map_err(|e| e.0)?;
        self.sched_waiting.add(1u32, Relaxed);
        Ok(true)
    }

    /// Queue a scheduler pass (from any context: fence callbacks, the IRQ
    /// thread, under the ring lock).
    pub(crate) fn kick_scheduler(self: &Arc<Self>) {
        // Err: queued already, which is all we want. (A delayed work item
        // with no delay, for its synchronous cancel at unbind.)
        let _ =
            kernel::workqueue::system_highpri().enqueue_delayed::<Arc<Self>, 3>(self.clone(), 0);
    }

    /// A pass found a job it could not move on (no ring room, or a failed
    /// job waiting for its queue's earlier jobs): the next retirement or
    /// release runs the scheduler again.
    pub(crate) fn kick_scheduler_if_blocked(self: &Arc<Self>) {
        // (A plain read first: every submission and drain comes here, and
        // the flag is almost never set.)
        if self.sched_blocked.load(Relaxed) && self.sched_blocked.xchg(false, Relaxed) {
            self.kick_scheduler();
        }
    }

    /// Move ready jobs into the ring: each priority from the highest, its
    /// queues in turn, one job per queue per turn, while the ring has room.
    pub(crate) fn run_scheduler(self: &Arc<Self>) {
        let mut poll = false;
        {
            // Every job the pass moves has a published fence that only
            // signals once it is in the ring.
            let _signalling = Signalling::begin();
            let mut list = self.sched.lock();
            'prio: for prio in (0..list.next.len()).rev() {
                let n = list.queues.len();
                loop {
                    let mut progress = false;
                    for k in 0..n {
                        // (n > 0 here; no panic path either way.)
                        let i = list.next[prio].wrapping_add(k).checked_rem(n).unwrap_or(0);
                        let Some(q) = list.queues.get(i).cloned() else {
                            break;
                        };
                        if q.priority as usize != prio {
                            continue;
                        }
                        match self.step(&q, &mut poll) {
                            Step::Moved => {
                                progress = true;
                                list.next[prio] = i.wrapping_add(1).checked_rem(n).unwrap_or(0);
                            }
                            Step::Idle => {}
                            Step::RingFull => {
                                self.sched_blocked.store(true, Relaxed);
                                break 'prio;
                            }
                        }
                    }
                    if !progress {
                        break;
                    }
                }
            }
            // Queues destroyed and drained are forgotten (their jobs keep
            // what they need). Freeing a queue frees memory only.
            list.queues
                .retain(|q| !(q.destroyed.load(Relaxed) && q.pending.lock().jobs.is_empty()));
        }
        if poll {
            self.poll_scheduler();
        }
    }

    /// One step for one queue: its head job into the ring if it is ready.
    ///
    /// Runs in a fence signalling section: the list's reference to the job
    /// moves into the ring's or the retired list (or back to the list),
    /// never dropped here, where it could be the last one and free the
    /// job's objects and address space (their locks are taken where
    /// memory is allocated).
    fn step(self: &Arc<Self>, q: &SchedQueue, poll: &mut bool) -> Step {
        let mut pending = q.pending.lock();
        let Some(head) = pending.jobs.first() else {
            return Step::Idle;
        };
        if head.attach_dependencies() {
            *poll = true;
        }
        if head.deps_left() != 0 {
            return Step::Idle;
        }
        let failed = head.not_running();
        // A job that will not run is signalled after every earlier job of
        // its queue.
        if failed.is_some() && pending.last.as_ref().is_some_and(|f| !f.is_signaled()) {
            self.sched_blocked.store(true, Relaxed);
            return Step::Idle;
        }
        let Ok(job) = pending.jobs.remove(0) else {
            return Step::Idle;
        };
        let fence = ARef::from(&*job.fence);
        let back = match failed {
            Some(e) => self.retire_unqueued(job, Outcome::not_queued(e)).err(),
            None => match self.enter_ring(job, self.ring_depth(q.priority)) {
                Ok(()) => None,
                Err(NotEntered::NoRoom(job)) => Some(job),
                // Unbind: the device will not run it.
                Err(NotEntered::Stopped(job)) => {
                    self.retire_unqueued(job, Outcome::canceled()).err()
                }
            },
        };
        let Some(job) = back else {
            self.sched_waiting.fetch_sub(1u32, Relaxed);
            pending.last = Some(fence);
            return Step::Moved;
        };
        // Back at the head. Cannot fail: the removal left the room; were
        // it to, leaking the job beats freeing it here.
        if let Err(e) = pending.jobs.insert_within_capacity(0, job) {
            core::mem::forget(e);
        }
        Step::RingFull
    }

    /// Unbind: end every job still waiting in a queue as cancelled, in
    /// each queue's order (the ring's jobs were cancelled before). The
    /// lists go away with them: later submissions fail (ENODEV).
    pub(crate) fn cancel_pending(&self) {
        let mut i = 0;
        loop {
            let q = self.sched.lock().queues.get(i).cloned();
            let Some(q) = q else { break };
            i += 1;
            let jobs = {
                let _signalling = Signalling::begin();
                let mut pending = q.pending.lock();
                let jobs = core::mem::replace(&mut pending.jobs, KVec::new());
                self.sched_waiting.fetch_sub(jobs.len() as u32, Relaxed);
                for job in jobs.iter() {
                    job.retire(Outcome::canceled(), kernel::time::Delta::ZERO);
                }
                jobs
            };
            // Outside the section: releasing may free objects.
            for job in jobs.iter() {
                job.release();
            }
        }
    }
}

impl Engine {
    /// Debugfs: the queues, their pending jobs and what their heads wait for.
    pub(crate) fn describe_queues(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let list = self.sched.lock();
        writeln!(
            out,
            "queues: {} (jobs waiting: {}, scheduler blocked: {})",
            list.queues.len(),
            self.sched_waiting.load(Relaxed),
            self.sched_blocked.load(Relaxed)
        )?;
        // Live queues per priority, LOW first (the credit limit's input).
        write!(out, "queues per priority:")?;
        for n in self.queues_by_priority.iter() {
            write!(out, " {}", n.load(Relaxed))?;
        }
        writeln!(out)?;
        for q in list.queues.iter() {
            let pending = q.pending.lock();
            write!(
                out,
                "  queue priority {} active {} pending {}",
                q.priority,
                q.active.load(Relaxed),
                pending.jobs.len()
            )?;
            match pending.jobs.first() {
                Some(head) => writeln!(
                    out,
                    ", head job {} waits for {}",
                    head.seqno,
                    head.deps_left()
                )?,
                None => writeln!(out)?,
            }
        }
        Ok(())
    }
}

enum Step {
    Moved,
    Idle,
    RingFull,
}

/// Register `cb` on `fence`; whether it was registered (false: signalled
/// already, the caller counts the dependency done itself).
pub(crate) fn register(cb: &mut Pin<KBox<DepCallback>>, fence: &Fence) -> bool {
    matches!(cb.as_mut().register(fence), Ok(true))
}
