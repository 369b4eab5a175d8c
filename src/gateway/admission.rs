//! Admission: how many exchanges run at once, in all and per consumer, and who waits
//! when the node is overloaded.
//!
//! Owns the node's running count, each authenticated consumer's share of the node's
//! exchanges, the node's **overload control** and the queue of requests waiting for it.
//!
//! - A consumer at `limits.max_in_flight_per_consumer` running exchanges is refused at
//!   once with `ratelimit.in_flight_share_exceeded`, so one tenant, however slow or busy,
//!   always leaves room for the others; a waiting request is handed a place only while its
//!   consumer is under that share, and is refused for the share if it never is.
//! - `limits.max_concurrent_requests` is the hard cap on the node's exchanges, running and
//!   waiting: beyond it a request is refused at once with `gateway.overloaded` (it bounds
//!   the memory the node holds for requests).
//! - Below the hard cap, the **overload control** (decision 0016) may set a lower limit on
//!   the exchanges that *run*: a probe measures the runtime's scheduling delay while the
//!   node is busy; above [`TARGET_DELAY`] the limit shrinks, below it (with requests
//!   waiting) it grows again, and after a calm spell it is lifted. A slow backend does not
//!   lower it (an exchange waiting on its backend is not runnable), a saturated core does.
//! - A request over that limit **waits**, newest first (adaptive LIFO: the one that arrived
//!   last is the one whose client is still waiting for it), for at most [`WAIT_AT_MOST`] or
//!   its exchange's deadline, then is refused with `gateway.overloaded`. Waiting requests
//!   count against the hard cap, not against their consumer's share: a consumer whose
//!   requests wait has taken no running place from anyone. A freed place goes to a waiter
//!   fresher than [`STALE_AFTER`]; stale ones get places only from the probe's sweep, when
//!   no fresh one waits (after a burst). Once requests have waited without a break for
//!   [`SUSTAINED_AFTER`] (sustained overload, not a burst), the sweep admits no stale
//!   waiter: they wait out their time and are refused. So past saturation
//!   the requests the node admits are the fresh ones, and the queue that a saturated core
//!   would otherwise build in every connection's socket is held here instead, where it
//!   costs no CPU.
//!
//! The limits are read at each admission, so a reload resizes them without dropping
//! anything in flight.
//!
//! Does not own: who the consumer is (the registry authenticates it) or the quotas of
//! contracts (rate and daily, in `contract::quota`).

use crate::config::Limits;
use crate::error::{ErrorCode, GatewayError};
use crate::identity::ClientId;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// The longest a request waits for the overload control's limit before it is refused.
pub const WAIT_AT_MOST: Duration = Duration::from_millis(100);
/// A waiter older than this is handed a place only by the probe's sweep (every
/// [`PROBE_EVERY`]), not at once: while fresh requests keep arriving, a freed place goes to
/// one of them, so the requests admitted under overload are the fresh ones.
pub const STALE_AFTER: Duration = Duration::from_millis(10);
/// Requests have waited without a break for this long: the overload is sustained, not a
/// burst. Then the probe's sweep no longer hands places to stale waiters (their clients
/// have waited longest; admitting them would make the admitted requests' tail): they wait
/// out their time and are refused (decision 0016).
pub const SUSTAINED_AFTER: Duration = Duration::from_millis(100);
/// The scheduling delay above which the overload control lowers the running limit: a
/// request's every step (read, call, answer) waits about this long for its turn.
pub const TARGET_DELAY: Duration = Duration::from_millis(1);
/// How often the probe samples the scheduling delay while the node is busy.
pub const PROBE_EVERY: Duration = Duration::from_millis(5);
/// Running exchanges from which the probe starts sampling (below, no core is saturated by
/// this node's exchanges, and an idle node is never woken for it).
pub const BUSY_AT: usize = 32;
/// The overload control never lowers the running limit below this.
pub const MIN_LIMIT: usize = 8;
/// Consecutive calm samples (no one waiting, delay under target) after which the limit is
/// lifted and the probe sleeps until the node is busy again.
const CALM_SAMPLES: u32 = 20;
/// "No limit set by the overload control": only the hard cap applies.
const UNLIMITED: usize = usize::MAX;

/// Each consumer's in-flight count, by its authenticated identity (shared, so that copying
/// the map to add a consumer copies pointers, not identities).
type Counts = foldhash::HashMap<Arc<ClientId>, Arc<AtomicUsize>>;

/// The node's exchanges: running, waiting, and each consumer's.
///
/// No lock is held across an admission, and an admission that does not wait writes only
/// two cache lines that other threads share (issue 12, scaling with cores): the node's
/// running count, and the consumer's count (whose reference count sits on the same line).
/// The consumers' counts are found in a copy-on-write map read through `ArcSwap` (no shared
/// write to read it); a consumer's first admission copies the map once, under a mutex that
/// only such first admissions take (the registry bounds the consumers). A reload keeps the
/// map, so a consumer's count carries across it. A place is taken by incrementing first and
/// checking the value it had, and given back at once when over the cap, so concurrent
/// admissions near a cap can only refuse, never admit past it.
///
/// The waiting queue has a mutex of its own, taken only while someone waits (overload):
/// the fast path reads one counter of waiters, written only then.
#[derive(Debug)]
pub struct Admission {
    running: AtomicUsize,
    /// Authenticated consumers only (the registry bounds the keys); an entry stays when its
    /// count returns to zero, so its atomic is not re-created per exchange.
    per_consumer: ArcSwap<Counts>,
    /// Serialises the copies that add a consumer.
    adding: Mutex<()>,
    /// The running limit the overload control set ([`UNLIMITED`] when none).
    limit: AtomicUsize,
    /// The hard cap last read from the limits (for releases, which have no limits at hand).
    hard: AtomicUsize,
    /// Requests waiting; equal to the queue's length, readable without its lock.
    waiting: AtomicUsize,
    queue: Mutex<Queue>,
    /// Wakes the probe when the node becomes busy.
    busy: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    /// Oldest first: the newest is popped.
    waiters: Vec<Waiter>,
    /// Since when someone has been waiting without a break (`None` while no one waits).
    busy_since: Option<Instant>,
}

impl Queue {
    /// Whether requests have waited without a break for [`SUSTAINED_AFTER`] at `now`.
    fn sustained(&self, now: Instant) -> bool {
        self.busy_since
            .is_some_and(|since| now.duration_since(since) >= SUSTAINED_AFTER)
    }

    /// Notes the queue's length after a change (the count readable without the lock, and
    /// the start of a spell of waiting).
    fn counted(&mut self, waiting: &AtomicUsize, now: impl FnOnce() -> Instant) {
        let len = self.waiters.len();
        if len == 0 {
            self.busy_since = None;
        } else if self.busy_since.is_none() {
            self.busy_since = Some(now());
        }
        waiting.store(len, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    /// Sent when a running place is handed to this waiter (the running count and its
    /// consumer's count already hold it).
    place: oneshot::Sender<()>,
    consumer: Arc<AtomicUsize>,
    share: usize,
    since: Instant,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            running: AtomicUsize::new(0),
            per_consumer: ArcSwap::default(),
            adding: Mutex::new(()),
            limit: AtomicUsize::new(UNLIMITED),
            hard: AtomicUsize::new(UNLIMITED),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Queue::default()),
            busy: Notify::new(),
        }
    }
}

/// One admitted exchange; dropping it frees its place (or hands it to the newest waiter).
/// It borrows the admission (the exchange runs within the gateway's lifetime), so taking one
/// does not touch a reference count every exchange shares.
#[derive(Debug)]
pub struct Ticket<'a> {
    admission: &'a Admission,
    consumer: Arc<AtomicUsize>,
}

/// What [`Admission::enter`] found: a place now, or the consumer's count to wait with.
enum Entered<'a> {
    Admitted(Ticket<'a>),
    Wait(Arc<AtomicUsize>),
}

/// Takes one place under `cap`, or leaves the count as it was.
fn take(count: &AtomicUsize, cap: usize) -> bool {
    if count.fetch_add(1, Ordering::SeqCst) < cap {
        true
    } else {
        count.fetch_sub(1, Ordering::SeqCst);
        false
    }
}

fn overloaded() -> GatewayError {
    GatewayError::new(
        ErrorCode::GatewayOverloaded,
        "the node is at its limit of exchanges; try again shortly",
    )
    .with_retry_after(Duration::from_secs(1))
}

fn share_exceeded() -> GatewayError {
    GatewayError::new(
        ErrorCode::InFlightShareExceeded,
        "this client already has its share of the node's exchanges in flight",
    )
    .with_retry_after(Duration::from_secs(1))
}

impl Admission {
    /// A new, empty count.
    pub fn new() -> Arc<Self> {
        Arc::new(Admission::default())
    }

    fn counter(&self, consumer: &ClientId) -> Arc<AtomicUsize> {
        if let Some(count) = self.per_consumer.load().get(consumer) {
            return count.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.per_consumer.load_full();
        if let Some(count) = current.get(consumer) {
            return count.clone();
        }
        let count = Arc::new(AtomicUsize::new(0));
        let mut next = Counts::clone(&current);
        next.insert(Arc::new(consumer.clone()), count.clone());
        self.per_consumer.store(Arc::new(next));
        count
    }

    /// The running limit now: the overload control's, within the hard cap.
    fn cap(&self) -> usize {
        self.limit
            .load(Ordering::Relaxed)
            .min(self.hard.load(Ordering::Relaxed))
    }

    fn read_limits(&self, limits: &Limits) {
        if self.hard.load(Ordering::Relaxed) != limits.max_concurrent_requests {
            self.hard
                .store(limits.max_concurrent_requests, Ordering::Relaxed);
        }
    }

    /// Takes a running place and the consumer's if one is free and no one waits for it
    /// (refused for the share if the consumer is at it); else the consumer's count, to wait
    /// with.
    fn enter(&self, consumer: &ClientId, limits: &Limits) -> Result<Entered<'_>, GatewayError> {
        self.read_limits(limits);
        let mine = self.counter(consumer);
        let share = limits.max_in_flight_per_consumer;
        if self.waiting.load(Ordering::SeqCst) != 0 || !take(&self.running, self.cap()) {
            return Ok(Entered::Wait(mine));
        }
        if !take(&mine, share) {
            self.release();
            return Err(share_exceeded());
        }
        if self.running.load(Ordering::Relaxed) == BUSY_AT {
            self.busy.notify_one();
        }
        Ok(Entered::Admitted(self.ticket(mine)))
    }

    /// Admits one exchange of `consumer` (an authenticated identity: the map is bounded by
    /// the registry) now, or refuses it at once: never waits (for callers without a
    /// deadline of their own to wait under).
    pub fn admit(&self, consumer: &ClientId, limits: &Limits) -> Result<Ticket<'_>, GatewayError> {
        match self.enter(consumer, limits)? {
            Entered::Admitted(ticket) => Ok(ticket),
            Entered::Wait(_) => Err(overloaded()),
        }
    }

    /// Admits one exchange of `consumer`, waiting (newest first) while the overload control
    /// holds the node at its running limit, until `wait_until` at the latest.
    pub async fn admit_or_wait(
        &self,
        consumer: &ClientId,
        limits: &Limits,
        wait_until: Instant,
    ) -> Result<Ticket<'_>, GatewayError> {
        match self.enter(consumer, limits)? {
            Entered::Admitted(ticket) => Ok(ticket),
            Entered::Wait(mine) => {
                self.wait(&mine, limits, wait_until).await?;
                Ok(self.ticket(mine))
            }
        }
    }

    fn ticket(&self, consumer: Arc<AtomicUsize>) -> Ticket<'_> {
        Ticket {
            admission: self,
            consumer,
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a running place and the consumer's: `Ok` once both are this request's.
    async fn wait(
        &self,
        consumer: &Arc<AtomicUsize>,
        limits: &Limits,
        wait_until: Instant,
    ) -> Result<(), GatewayError> {
        let now = Instant::now();
        let (id, place) = {
            let mut queue = self.lock_queue();
            let waiting = queue.waiters.len();
            if self.running.load(Ordering::SeqCst) + waiting >= limits.max_concurrent_requests {
                return Err(overloaded());
            }
            if consumer.load(Ordering::SeqCst) >= limits.max_in_flight_per_consumer {
                return Err(share_exceeded());
            }
            let id = queue.next_id;
            queue.next_id += 1;
            let (sender, place) = oneshot::channel();
            queue.waiters.push(Waiter {
                id,
                place: sender,
                consumer: consumer.clone(),
                share: limits.max_in_flight_per_consumer,
                since: now,
            });
            queue.counted(&self.waiting, || now);
            (id, place)
        };
        // A place may have freed between the fast path and the queue: the release that
        // freed it read `waiting` before this request was counted in it.
        self.hand_over(Some(now));
        let mut guard = Waiting {
            admission: self,
            id,
            place,
            consumer,
            share: limits.max_in_flight_per_consumer,
            done: false,
        };
        let outcome = tokio::time::timeout_at(wait_until, &mut guard.place).await;
        guard.finish(matches!(outcome, Ok(Ok(()))))
    }

    /// Hands free running places to the newest waiters whose consumers are under their
    /// share (a waiter whose consumer is at its share stays, and is refused for the share
    /// if no place comes before its wait ends). With `fresh_at`, only waiters that arrived
    /// less than [`STALE_AFTER`] before it are eligible (a place freed while only stale
    /// requests wait is kept for the next arrival, or for the probe's sweep, `None`, which
    /// reaches stale waiters only when none is fresh).
    fn hand_over(&self, fresh_at: Option<Instant>) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut queue = self.lock_queue();
        // The sweep reaches stale waiters only when no fresh one waits (a burst is over):
        // while requests keep arriving, places raised by the limit go to them too. Under
        // sustained overload it never does: a stale waiter's client has waited too long.
        let fresh_at = fresh_at.or_else(|| {
            let now = Instant::now();
            (queue.sustained(now)
                || queue
                    .waiters
                    .last()
                    .is_some_and(|newest| now.duration_since(newest.since) < STALE_AFTER))
            .then_some(now)
        });
        while !queue.waiters.is_empty() && take(&self.running, self.cap()) {
            let eligible = queue
                .waiters
                .iter()
                .rev()
                .take_while(|waiter| {
                    fresh_at.is_none_or(|now| now.duration_since(waiter.since) < STALE_AFTER)
                })
                .position(|waiter| take(&waiter.consumer, waiter.share))
                .map(|from_top| queue.waiters.len() - 1 - from_top);
            let Some(at) = eligible else {
                self.running.fetch_sub(1, Ordering::SeqCst);
                break;
            };
            let waiter = queue.waiters.remove(at);
            // The receiver lives as long as the waiter is queued (see [`Waiting`]).
            if waiter.place.send(()).is_err() {
                waiter.consumer.fetch_sub(1, Ordering::SeqCst);
                self.running.fetch_sub(1, Ordering::SeqCst);
            }
        }
        queue.counted(&self.waiting, Instant::now);
    }

    /// Gives a running place back, to the newest fresh waiter if someone waits.
    fn release(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) != 0 {
            self.hand_over(Some(Instant::now()));
        }
    }

    /// Exchanges running now.
    pub fn in_flight(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Requests waiting for a running place now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// The running limit the overload control set, if any.
    pub fn limit(&self) -> Option<usize> {
        match self.limit.load(Ordering::Relaxed) {
            UNLIMITED => None,
            limit => Some(limit),
        }
    }
}

/// A request in the queue: whatever ends its wait (a place, the deadline, or its future
/// dropped because the client went away) leaves the queue and the counts consistent. It
/// holds the receiving end, so a hand-over (which sends under the queue's lock) always
/// reaches a request that is still in the queue.
struct Waiting<'a> {
    admission: &'a Admission,
    id: u64,
    place: oneshot::Receiver<()>,
    consumer: &'a Arc<AtomicUsize>,
    share: usize,
    done: bool,
}

impl Waiting<'_> {
    /// Ends the wait: `Ok` if a place was handed to this request, even at the last instant.
    fn finish(mut self, handed: bool) -> Result<(), GatewayError> {
        self.done = true;
        if handed || !self.leave() {
            metrics::counter!("datagate_admission_waits_total", "outcome" => "admitted")
                .increment(1);
            return Ok(());
        }
        metrics::counter!("datagate_admission_waits_total", "outcome" => "refused").increment(1);
        if self.consumer.load(Ordering::SeqCst) >= self.share {
            return Err(share_exceeded());
        }
        Err(overloaded())
    }

    /// Leaves the queue; false if a place had been handed to this request already.
    fn leave(&self) -> bool {
        let admission = self.admission;
        let mut queue = admission.lock_queue();
        let Some(at) = queue.waiters.iter().rposition(|w| w.id == self.id) else {
            return false;
        };
        queue.waiters.remove(at);
        queue.counted(&admission.waiting, Instant::now);
        true
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Dropped mid-wait: give back the places if they had been handed over.
        if !self.done && !self.leave() {
            self.consumer.fetch_sub(1, Ordering::SeqCst);
            self.admission.release();
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.consumer.fetch_sub(1, Ordering::SeqCst);
        self.admission.release();
    }
}

/// The overload control's memory between two samples.
#[derive(Debug, Default)]
pub struct Control {
    calm: u32,
    /// Consecutive samples over the target delay.
    above: u32,
}

impl Admission {
    /// One sample of the runtime's scheduling delay: sets the running limit. Over the
    /// target for a second sample in a row (one late wake-up of a virtual machine is not
    /// overload), it falls in proportion (`target ÷ delay`, between a tenth and a half off);
    /// well under target while requests wait, it grows by a quarter; it is lifted after a
    /// calm spell. Returns whether the node is still busy, i.e. whether the probe should keep
    /// sampling.
    pub fn adjust(&self, control: &mut Control, delay: Duration) -> bool {
        let running = self.running.load(Ordering::SeqCst);
        let waiting = self.waiting.load(Ordering::SeqCst);
        let hard = self.hard.load(Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        let next = if delay > TARGET_DELAY {
            control.calm = 0;
            control.above += 1;
            if control.above < 2 {
                limit
            } else {
                // From what actually runs: a limit above it would take several samples to bite.
                let from = limit.min(running).min(hard);
                let scaled = (from as u128 * TARGET_DELAY.as_nanos() / delay.as_nanos().max(1))
                    .try_into()
                    .unwrap_or(usize::MAX);
                scaled.clamp(from / 2, from * 9 / 10).max(MIN_LIMIT)
            }
        } else if waiting > 0 {
            control.calm = 0;
            control.above = 0;
            match limit {
                UNLIMITED => UNLIMITED,
                limit if delay <= TARGET_DELAY / 2 => limit + (limit / 4).max(1),
                limit => limit,
            }
        } else {
            control.calm += 1;
            control.above = 0;
            if control.calm >= CALM_SAMPLES {
                UNLIMITED
            } else {
                limit
            }
        };
        let next = if next >= hard { UNLIMITED } else { next };
        self.limit.store(next, Ordering::Relaxed);
        metrics::gauge!("datagate_admission_limit").set(match next {
            UNLIMITED => 0.0,
            limit => limit as f64,
        });
        // The sweep: free places go to the newest waiters, stale ones included (after a
        // burst, when no fresh request comes to take them).
        self.hand_over(None);
        next != UNLIMITED || running >= BUSY_AT
    }

    /// The overload control's probe, for the node's lifetime: asleep until the node is
    /// busy ([`BUSY_AT`] exchanges running), then a sample every [`PROBE_EVERY`] until
    /// [`Admission::adjust`] finds it calm again.
    pub async fn probe(self: Arc<Self>) {
        loop {
            self.busy.notified().await;
            let mut control = Control::default();
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let delay = scheduling_delay().await;
                if !self.adjust(&mut control, delay) {
                    break;
                }
            }
        }
    }
}

/// How long a task that yields waits for its next turn: one pass over the tasks ready
/// before it (and the I/O driver's poll), which is what every step of every request waits
/// on a busy runtime.
async fn scheduling_delay() -> Duration {
    let yielded = Instant::now();
    tokio::task::yield_now().await;
    yielded.elapsed()
}
#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, share: usize) -> Limits {
        let mut errors = Vec::new();
        let raw = crate::config::raw::RawLimits {
            max_concurrent_requests: total,
            max_in_flight_per_consumer: Some(share),
            ..Default::default()
        };
        let limits = Limits::build(&raw, std::path::Path::new("t"), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        limits
    }

    /// Finding 2 of issue 7: one tenant at its share leaves room for the others.
    /// 003 Điều 50 khoản 1: one consumer cannot interrupt the service of the others.
    #[test]
    fn one_consumer_cannot_take_another_consumers_room() {
        let admission = Admission::new();
        let greedy: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
        let other: ClientId = "VN/GOV/000.00.00.G12/land-registry".parse().expect("id");
        let limits = limits(4, 2);
        let held: Vec<Ticket> = (0..2)
            .map(|_| admission.admit(&greedy, &limits).expect("within share"))
            .collect();
        let refusal = admission.admit(&greedy, &limits).expect_err("over share");
        assert_eq!(refusal.code(), ErrorCode::InFlightShareExceeded);
        let _a = admission
            .admit(&other, &limits)
            .expect("the other still has room");
        let _b = admission
            .admit(&other, &limits)
            .expect("the other still has room");
        assert_eq!(admission.in_flight(), 4);
        drop(held);
        assert_eq!(admission.in_flight(), 2);
        let _c = admission.admit(&greedy, &limits).expect("share freed");
    }

    /// 003 Điều 50 khoản 1: beyond the node's total, requests are shed at once, never queued.
    /// (Without an overload limit, the total is also the running limit.)
    #[test]
    fn the_node_total_is_a_hard_cap() {
        let admission = Admission::new();
        let limits = limits(2, 2);
        let a: ClientId = "VN/GOV/000.00.00.H29/a".parse().expect("id");
        let b: ClientId = "VN/GOV/000.00.00.H29/b".parse().expect("id");
        let _one = admission.admit(&a, &limits).expect("room");
        let _two = admission.admit(&b, &limits).expect("room");
        assert_eq!(
            admission.admit(&b, &limits).expect_err("full").code(),
            ErrorCode::GatewayOverloaded
        );
        // A reload that raises the cap takes effect at the next admission.
        let bigger = self::limits(3, 2);
        let _three = admission.admit(&b, &bigger).expect("resized");
    }

    /// 003 Điều 50 khoản 1: consumers first seen at the same moment on several threads each
    /// get a count of their own, and none is lost to another's copy of the map: every one
    /// of them is held to its share afterwards.
    #[test]
    fn consumers_added_at_once_each_keep_their_count() {
        let admission = Admission::new();
        let limits = limits(1_000, 1);
        let consumers: Vec<ClientId> = (0..32)
            .map(|i| format!("VN/GOV/000.00.00.H29/c{i}").parse().expect("id"))
            .collect();
        let tickets: Vec<Ticket<'_>> = std::thread::scope(|scope| {
            let handles: Vec<_> = consumers
                .chunks(4)
                .map(|mine| {
                    let (admission, limits) = (&admission, &limits);
                    scope.spawn(move || {
                        mine.iter()
                            .map(|c| admission.admit(c, limits).expect("first of its share"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(admission.in_flight(), 32);
        for consumer in &consumers {
            let refusal = admission
                .admit(consumer, &limits)
                .expect_err("its one place is held");
            assert_eq!(refusal.code(), ErrorCode::InFlightShareExceeded);
        }
        drop(tickets);
        assert_eq!(admission.in_flight(), 0);
        for consumer in &consumers {
            let _again = admission
                .admit(consumer, &limits)
                .expect("its place came back");
        }
    }

    /// 003 Điều 50 khoản 1 under contention: threads admitting at once never hold more than
    /// the node's total or one consumer's share, and every place comes back.
    #[test]
    fn concurrent_admissions_never_exceed_the_caps() {
        let admission = Admission::new();
        let limits = limits(6, 4);
        let consumers: Vec<ClientId> = ["VN/GOV/000.00.00.H29/a", "VN/GOV/000.00.00.H29/b"]
            .iter()
            .map(|id| id.parse().expect("id"))
            .collect();
        let peak = std::sync::Mutex::new((0usize, [0usize; 2]));
        // Counted by the holders themselves: the node's own count may show a refused
        // attempt's increment for an instant before it is given back.
        let held = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let held_total = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let (admission, limits, consumers, peak, held, held_total) =
                    (&admission, &limits, &consumers, &peak, &held, &held_total);
                scope.spawn(move || {
                    let which = thread % 2;
                    for _ in 0..2_000 {
                        if let Ok(ticket) = admission.admit(&consumers[which], limits) {
                            let mine = held[which].fetch_add(1, Ordering::SeqCst) + 1;
                            let total = held_total.fetch_add(1, Ordering::SeqCst) + 1;
                            let mut peak = peak.lock().expect("peak");
                            peak.0 = peak.0.max(total);
                            peak.1[which] = peak.1[which].max(mine);
                            drop(peak);
                            held[which].fetch_sub(1, Ordering::SeqCst);
                            held_total.fetch_sub(1, Ordering::SeqCst);
                            drop(ticket);
                        }
                    }
                });
            }
        });
        let (total, mine) = *peak.lock().expect("peak");
        assert!(total <= 6, "node total exceeded: {total}");
        assert!(mine.iter().all(|&m| m <= 4), "a share exceeded: {mine:?}");
        assert!(total > 0, "nothing was admitted");
        assert_eq!(admission.in_flight(), 0, "every place comes back");
    }

    fn id(name: &str) -> ClientId {
        format!("VN/GOV/000.00.00.H29/{name}").parse().expect("id")
    }

    /// An admission with `running` exchanges of `who` running and the overload control's
    /// limit lowered from there by one sample of a saturated runtime.
    fn saturated<'a>(
        admission: &'a Admission,
        who: &ClientId,
        limits: &Limits,
        running: usize,
    ) -> Vec<Ticket<'a>> {
        let tickets: Vec<Ticket<'a>> = (0..running)
            .map(|_| admission.admit(who, limits).expect("room"))
            .collect();
        let mut control = Control::default();
        let over = TARGET_DELAY * 4 / 3;
        assert!(admission.adjust(&mut control, over));
        assert_eq!(admission.limit(), None, "one late sample is not overload");
        assert!(admission.adjust(&mut control, over));
        assert_eq!(admission.limit(), Some(running * 3 / 4));
        tickets
    }

    /// Decision 0016, 003 Điều 50 khoản 1 (service kept up under load): past the overload
    /// limit requests wait, and a freed place goes to the newest of them (the one whose
    /// client is still waiting), not the oldest.
    #[tokio::test(start_paused = true)]
    async fn over_the_limit_the_newest_waiting_request_is_admitted_first() {
        let admission = Admission::new();
        let limits = limits(1_000, 1_000);
        let mut tickets = saturated(&admission, &id("a"), &limits, 40);
        let until = Instant::now() + WAIT_AT_MOST;
        let (older, newer) = (id("older"), id("newer"));
        let mut first = Box::pin(admission.admit_or_wait(&older, &limits, until));
        let mut second = Box::pin(admission.admit_or_wait(&newer, &limits, until));
        assert!(futures_util::poll!(&mut first).is_pending());
        assert!(futures_util::poll!(&mut second).is_pending());
        assert_eq!(admission.waiting(), 2);
        // Down to the limit (30): still no place free.
        tickets.truncate(30);
        assert!(futures_util::poll!(&mut first).is_pending());
        assert!(futures_util::poll!(&mut second).is_pending());
        tickets.pop();
        let ticket = match futures_util::poll!(&mut second) {
            std::task::Poll::Ready(admitted) => admitted.expect("the newest is admitted"),
            std::task::Poll::Pending => panic!("the newest still waits"),
        };
        assert!(
            futures_util::poll!(&mut first).is_pending(),
            "the oldest waits on"
        );
        assert_eq!((admission.in_flight(), admission.waiting()), (30, 1));
        drop(ticket);
        let _first = first.await.expect("then the older one");
        assert_eq!((admission.in_flight(), admission.waiting()), (30, 0));
    }

    /// Decision 0016: under overload a freed place goes to a fresh request, not to one that
    /// has waited longer than [`STALE_AFTER`]; the stale one is admitted only by the probe's
    /// sweep (after a burst, when no fresh request comes).
    #[tokio::test(start_paused = true)]
    async fn a_freed_place_goes_to_a_fresh_request_and_stale_ones_to_the_sweep() {
        let admission = Admission::new();
        let limits = limits(1_000, 1_000);
        let mut tickets = saturated(&admission, &id("a"), &limits, 40);
        tickets.truncate(30);
        let until = Instant::now() + WAIT_AT_MOST;
        let (old, new) = (id("old"), id("new"));
        let mut stale = Box::pin(admission.admit_or_wait(&old, &limits, until));
        assert!(futures_util::poll!(&mut stale).is_pending());
        tokio::time::advance(STALE_AFTER).await;
        tickets.pop();
        assert!(
            futures_util::poll!(&mut stale).is_pending(),
            "a place freed while only a stale request waits is kept"
        );
        assert_eq!((admission.in_flight(), admission.waiting()), (29, 1));
        let fresh = admission
            .admit_or_wait(&new, &limits, until)
            .await
            .expect("a fresh request takes the kept place");
        assert_eq!((admission.in_flight(), admission.waiting()), (30, 1));
        // The probe raises the limit (30 → 37) while a fresh request waits as well: its
        // sweep admits the fresh one only.
        let newer = id("newer");
        let mut fresh_too = Box::pin(admission.admit_or_wait(&newer, &limits, until));
        assert!(futures_util::poll!(&mut fresh_too).is_pending());
        let mut control = Control::default();
        assert!(admission.adjust(&mut control, Duration::ZERO));
        assert_eq!(admission.limit(), Some(37));
        let _fresh_too = fresh_too.await.expect("the sweep admits the fresh one");
        assert!(
            futures_util::poll!(&mut stale).is_pending(),
            "not the stale one"
        );
        // With no fresh request waiting, the sweep reaches the stale one (after a burst).
        assert!(admission.adjust(&mut control, Duration::ZERO));
        let _stale = stale.await.expect("the sweep admits it");
        assert_eq!((admission.in_flight(), admission.waiting()), (32, 0));
        drop(fresh);
    }

    /// Decision 0016, 003 Điều 50 khoản 1: once requests have waited without a break for
    /// [`SUSTAINED_AFTER`], the probe's sweep no longer admits a stale waiter (its client
    /// has waited too long; admitting it would make the tail of the admitted requests), and
    /// it ends refused; a fresh request still takes a free place at once. After a burst
    /// (the queue emptied since), the sweep reaches stale waiters again.
    #[tokio::test(start_paused = true)]
    async fn under_sustained_overload_stale_requests_are_never_admitted() {
        let admission = Admission::new();
        let limits = limits(1_000, 1_000);
        let mut tickets = saturated(&admission, &id("a"), &limits, 40);
        tickets.truncate(30);
        let start = Instant::now();
        let first = id("first");
        let until = start + SUSTAINED_AFTER * 2;
        let mut stale = Box::pin(admission.admit_or_wait(&first, &limits, until));
        assert!(futures_util::poll!(&mut stale).is_pending());
        tokio::time::advance(SUSTAINED_AFTER / 2).await;
        // Before the overload is sustained, a place raised by the probe reaches a stale waiter.
        let mut control = Control::default();
        let earlier = id("earlier");
        let mut swept = Box::pin(admission.admit_or_wait(&earlier, &limits, start + WAIT_AT_MOST));
        assert!(futures_util::poll!(&mut swept).is_pending());
        tokio::time::advance(STALE_AFTER).await;
        admission.limit.store(31, Ordering::Relaxed);
        assert!(admission.adjust(&mut control, TARGET_DELAY));
        let _swept = swept.await.expect("a burst's stale waiter is swept in");
        assert_eq!((admission.in_flight(), admission.waiting()), (31, 1));
        // The queue has not been empty since `start`: from SUSTAINED_AFTER on, a place raised
        // by the probe is not given to the stale waiter.
        tokio::time::advance(SUSTAINED_AFTER / 2).await;
        assert!(admission.adjust(&mut control, Duration::ZERO));
        assert_eq!(admission.limit(), Some(38));
        assert!(
            futures_util::poll!(&mut stale).is_pending(),
            "the stale waiter is not swept in"
        );
        assert_eq!((admission.in_flight(), admission.waiting()), (31, 1));
        // A fresh request takes a free place at once.
        let fresh = id("fresh");
        let _fresh = admission
            .admit_or_wait(&fresh, &limits, Instant::now() + WAIT_AT_MOST)
            .await
            .expect("a fresh request is admitted");
        let refusal = stale.await.expect_err("the stale waiter ends refused");
        assert_eq!(refusal.code(), ErrorCode::GatewayOverloaded);
        assert_eq!(Instant::now(), until, "at the end of its wait");
        assert_eq!((admission.in_flight(), admission.waiting()), (32, 0));
        drop(tickets);
    }

    /// Decision 0016: a request that waited its longest is refused with the overload code,
    /// and leaves neither the queue nor its consumer's share taken.
    #[tokio::test(start_paused = true)]
    async fn a_request_that_waits_too_long_is_refused_as_overloaded() {
        let admission = Admission::new();
        let limits = limits(1_000, 1);
        let _tickets = saturated(&admission, &id("a"), &limits_with_share(1_000), 40);
        let late = id("late");
        let refusal = admission
            .admit_or_wait(&late, &limits, Instant::now() + WAIT_AT_MOST)
            .await
            .expect_err("no place within the wait");
        assert_eq!(refusal.code(), ErrorCode::GatewayOverloaded);
        assert_eq!(admission.waiting(), 0);
        // Its share (one) is free again: the next attempt waits rather than being refused
        // for the share.
        let refusal = admission
            .admit_or_wait(&late, &limits, Instant::now() + Duration::from_millis(1))
            .await
            .expect_err("still no place");
        assert_eq!(refusal.code(), ErrorCode::GatewayOverloaded);
    }

    fn limits_with_share(share: usize) -> Limits {
        limits(1_000, share)
    }

    /// A waiting request whose client goes away (its future dropped) leaves no place
    /// taken, also when a place had been handed to it just before.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_goes_away_takes_no_place_with_it() {
        let admission = Admission::new();
        let limits = limits(1_000, 1_000);
        let mut tickets = saturated(&admission, &id("a"), &limits, 40);
        let until = Instant::now() + WAIT_AT_MOST;
        let gone = id("gone");
        let mut waiting = Box::pin(admission.admit_or_wait(&gone, &limits, until));
        assert!(futures_util::poll!(&mut waiting).is_pending());
        drop(waiting);
        assert_eq!(admission.waiting(), 0);
        // Handed a place, then dropped before it ran again.
        let mut waiting = Box::pin(admission.admit_or_wait(&gone, &limits, until));
        assert!(futures_util::poll!(&mut waiting).is_pending());
        tickets.truncate(29);
        assert_eq!(admission.in_flight(), 30, "the place went to the waiter");
        drop(waiting);
        assert_eq!(admission.in_flight(), 29, "and came back when it left");
        drop(tickets);
        assert_eq!((admission.in_flight(), admission.waiting()), (0, 0));
    }

    /// 003 Điều 50 khoản 1: waiting requests count against the node's hard cap, so queueing
    /// cannot exceed it; a freed place goes to the newest waiter whose consumer is under its
    /// share, and a waiter whose consumer stays at its share is refused for the share.
    #[tokio::test(start_paused = true)]
    async fn waiting_requests_count_against_the_cap_and_places_respect_the_share() {
        let admission = Admission::new();
        let limits = limits(43, 1);
        let mut tickets = saturated(&admission, &id("a"), &limits_with_share(1_000), 40);
        let until = Instant::now() + WAIT_AT_MOST;
        let (b, c, d) = (id("b"), id("c"), id("d"));
        let mut b1 = Box::pin(admission.admit_or_wait(&b, &limits, until));
        let mut b2 = Box::pin(admission.admit_or_wait(&b, &limits, until));
        let mut c1 = Box::pin(admission.admit_or_wait(&c, &limits, until));
        for waiting in [&mut b1, &mut b2, &mut c1] {
            assert!(futures_util::poll!(waiting).is_pending());
        }
        let full = admission
            .admit_or_wait(&d, &limits, until)
            .await
            .expect_err("40 running and 3 waiting fill the node's 43");
        assert_eq!(full.code(), ErrorCode::GatewayOverloaded);
        // The fast path does not jump the queue either.
        assert_eq!(
            admission
                .admit(&d, &limits)
                .expect_err("queue first")
                .code(),
            ErrorCode::GatewayOverloaded
        );
        // Three places free under the limit (30): c's and b's newest request get two; b's
        // older one is passed over (b is at its share of one) and the third place stays free.
        tickets.truncate(27);
        let _c1 = c1.await.expect("the newest");
        let _b2 = b2.await.expect("b's newest");
        assert_eq!((admission.in_flight(), admission.waiting()), (29, 1));
        let share = b1.await.expect_err("b stays at its share");
        assert_eq!(share.code(), ErrorCode::InFlightShareExceeded);
        assert_eq!(admission.waiting(), 0);
    }

    /// Decision 0016: the limit falls in proportion to the delay over target (at most by
    /// half, from what runs, never under the minimum) at each sample after the first one
    /// over it, rises by a quarter while requests wait and the delay is well under target,
    /// and is lifted after a calm spell, when the probe may sleep.
    #[tokio::test(start_paused = true)]
    async fn the_limit_follows_the_scheduling_delay() {
        let admission = Admission::new();
        let limits = limits(1_000, 1_000);
        let mut tickets = saturated(&admission, &id("a"), &limits, 40);
        let mut control = Control::default();
        let high = TARGET_DELAY * 10;
        assert!(admission.adjust(&mut control, high));
        assert_eq!(admission.limit(), Some(30), "a first sample over target");
        assert!(admission.adjust(&mut control, TARGET_DELAY * 2));
        assert_eq!(
            admission.limit(),
            Some(15),
            "halved, from the limit (under what runs)"
        );
        assert!(admission.adjust(&mut control, TARGET_DELAY * 21 / 20));
        assert_eq!(admission.limit(), Some(13), "a tenth off at least");
        for _ in 0..20 {
            admission.adjust(&mut control, high);
        }
        assert_eq!(admission.limit(), Some(MIN_LIMIT));
        // Someone waits and the runtime is quick again: additive increase.
        tickets.truncate(MIN_LIMIT);
        let waiter = id("w");
        let mut waiting =
            Box::pin(admission.admit_or_wait(&waiter, &limits, Instant::now() + WAIT_AT_MOST));
        assert!(futures_util::poll!(&mut waiting).is_pending());
        assert!(admission.adjust(&mut control, Duration::ZERO));
        assert_eq!(
            admission.limit(),
            Some(MIN_LIMIT + 2),
            "a quarter, at least one"
        );
        let _admitted = waiting.await.expect("the raised limit admits the waiter");
        // Near the target but not over it, no one waiting: held (a first calm sample).
        let before = admission.limit();
        assert!(admission.adjust(&mut control, TARGET_DELAY));
        assert_eq!(admission.limit(), before);
        // Calm: lifted after the calm spell; the probe may sleep once fewer than BUSY_AT run.
        for _ in 1..CALM_SAMPLES - 1 {
            assert!(admission.adjust(&mut control, Duration::ZERO));
            assert_eq!(admission.limit(), before);
        }
        assert!(!admission.adjust(&mut control, Duration::ZERO));
        assert_eq!(admission.limit(), None);
    }

    /// Decision 0016 end to end on a real runtime: tasks that hold the one thread for
    /// milliseconds at a time make the probe measure a scheduling delay over the target,
    /// and it lowers the running limit.
    #[tokio::test(flavor = "current_thread")]
    async fn a_saturated_runtime_lowers_the_running_limit() {
        let admission = Admission::new();
        let limits = limits(1_000, 1_000);
        let _tickets: Vec<Ticket<'_>> = (0..BUSY_AT + 8)
            .map(|_| admission.admit(&id("a"), &limits).expect("room"))
            .collect();
        let probe = tokio::spawn(admission.clone().probe());
        let hogs: Vec<_> = (0..4)
            .map(|_| {
                tokio::spawn(async {
                    loop {
                        // Stands for a request's CPU work: the thread is not given back.
                        std::thread::sleep(Duration::from_millis(2));
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        // The hogs delay every timer too, so wait for the probe's verdict (bounded).
        for _ in 0..400 {
            if admission.limit().is_some() {
                break;
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        let limit = admission
            .limit()
            .expect("a limit was set within 400 samples' time");
        assert!(limit < BUSY_AT + 8, "the limit {limit} is below what ran");
        for task in hogs.iter().chain([&probe]) {
            task.abort();
        }
    }
}
