//! The bounded channel between two tasks: crossbeam's, with one change to
//! when a blocked producer is woken.
//!
//! A consumer slower than its producer keeps the channel full, and with a
//! plain bounded channel every message it takes wakes the producer to put
//! one more in: a futex wake, and a context switch on the other side, per
//! batch and per watermark. On a loaded 2-core machine those wake-ups were
//! 4-9% of a windowed count's samples, all of it on the consumer, the
//! job's bottleneck. Here a producer that finds the channel full sleeps
//! until the consumer has taken a quarter of it and one more message
//! ([`low_water`]; 5 of 16), so it is woken once per several messages and
//! then refills them in one go, while the consumer still has three
//! quarters of a channel queued (hysteresis, as in a TCP receive window).
//! Taking a message from a channel nobody waits on costs the consumer one
//! fence and one load.
//!
//! The consumer side is unchanged: a consumer waiting on an empty channel
//! is woken by the next message, so latency stays that of crossbeam.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub(crate) use crossbeam_channel::{RecvError, SendError, TrySendError};
use crossbeam_channel::{Select, SelectedOperation};

/// How long a producer sleeps before it looks again by itself: only a
/// safety net, since the consumer wakes it when there is room and when it
/// goes away.
const RECHECK: Duration = Duration::from_millis(50);

/// A channel holding at most `capacity` messages (at least one).
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    with_recheck(capacity, RECHECK)
}

fn with_recheck<T>(capacity: usize, recheck: Duration) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let low_water = low_water(capacity);
    let room = Arc::new(Room {
        waiting: AtomicBool::new(false),
        receivers: AtomicUsize::new(1),
        lock: Mutex::new(()),
        drained: Condvar::new(),
        low_water,
        recheck,
    });
    (
        Sender {
            inner: tx,
            room: room.clone(),
        },
        Receiver { inner: rx, room },
    )
}

/// Queued messages at or below which a sleeping producer is woken: a
/// quarter of the channel and one more message taken. Not half: with four
/// busy threads on two cores (Nexmark q5) a woken producer may wait for a
/// core, and waking at half made q5 4% slower (8 of 8 alternating runs),
/// where a quarter left it unchanged and saved the windowed count as much.
fn low_water(capacity: usize) -> usize {
    capacity - capacity / 4 - 1
}

/// What a blocked producer and its consumer share.
struct Room {
    /// A producer is asleep (or about to be) until the channel drains. The
    /// consumer clears it when it wakes the producers, so it wakes them
    /// once, not once per take until they get to run.
    waiting: AtomicBool,
    /// Receivers alive (crossbeam's sender cannot tell).
    receivers: AtomicUsize,
    lock: Mutex<()>,
    drained: Condvar,
    /// Queued messages at or below which a waiting producer is woken.
    low_water: usize,
    /// [`RECHECK`], but for tests, which must see the wake-ups work.
    recheck: Duration,
}

impl Room {
    fn wake(&self) {
        // Taking the lock orders this after the producer's last look at
        // the queue, so the notification cannot fall between its look and
        // its sleep. Notified after the lock is let go, so the woken
        // producer does not at once block on it again.
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.drained.notify_all();
    }
}

pub(crate) struct Sender<T> {
    inner: crossbeam_channel::Sender<T>,
    room: Arc<Room>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            inner: self.inner.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> Sender<T> {
    pub(crate) fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        self.inner.try_send(message)
    }

    /// Sends `message`, sleeping while the channel is full; once full, the
    /// producer sleeps until the channel is down to its [`low_water`] mark.
    /// Fails only when every receiver is gone.
    pub(crate) fn send(&self, mut message: T) -> Result<(), SendError<T>> {
        loop {
            match self.inner.try_send(message) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(m)) => return Err(SendError(m)),
                Err(TrySendError::Full(m)) => message = m,
            }
            self.wait_for_room();
        }
    }

    fn wait_for_room(&self) {
        let room = &*self.room;
        let mut guard = room.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Set again after every wake-up: the consumer cleared it.
            room.waiting.store(true, Ordering::SeqCst);
            // Pairs with the fence in `Receiver::taken`: either the
            // consumer sees `waiting`, or this sees the consumer's take.
            fence(Ordering::SeqCst);
            if self.inner.len() <= room.low_water || room.receivers.load(Ordering::SeqCst) == 0 {
                break;
            }
            guard = match room.drained.wait_timeout(guard, room.recheck) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        // The flag stays: another producer may be asleep under it. Only
        // the consumer clears it, when it wakes them all; at worst that
        // wake-up finds nobody.
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
}

pub(crate) struct Receiver<T> {
    inner: crossbeam_channel::Receiver<T>,
    room: Arc<Room>,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.room.receivers.fetch_add(1, Ordering::SeqCst);
        Receiver {
            inner: self.inner.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> Receiver<T> {
    /// Blocks until a message arrives or every sender is gone.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        let message = self.inner.recv();
        self.taken();
        message
    }

    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Result<T, crossbeam_channel::TryRecvError> {
        let message = self.inner.try_recv();
        self.taken();
        message
    }

    /// Adds this channel to `select`; take the message with [`Self::recv_selected`].
    pub(crate) fn select_on<'a>(&'a self, select: &mut Select<'a>) -> usize {
        select.recv(&self.inner)
    }

    /// Completes a `select` that chose this channel.
    pub(crate) fn recv_selected(&self, operation: SelectedOperation<'_>) -> Result<T, RecvError> {
        let message = operation.recv(&self.inner);
        self.taken();
        message
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// After a take: wakes a waiting producer once the channel is down to
    /// its low-water mark.
    fn taken(&self) {
        fence(Ordering::SeqCst);
        if self.room.waiting.load(Ordering::SeqCst)
            && self.inner.len() <= self.room.low_water
            && self.room.waiting.swap(false, Ordering::SeqCst)
        {
            self.room.wake();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // A producer asleep on a channel whose last receiver goes away
        // must find out now, not at its next recheck.
        let last = self.room.receivers.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && self.room.waiting.load(Ordering::SeqCst) {
            self.room.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A producer on this channel finishes waiting only when woken.
    const NEVER: Duration = Duration::from_secs(3600);

    /// Waits up to 10 s for `done`; a test that fails does not hang.
    fn within_10s<T>(done: &mpsc::Receiver<T>) -> T {
        done.recv_timeout(Duration::from_secs(10))
            .expect("the producer finished in time")
    }

    #[test]
    fn low_water_marks() {
        let marks: Vec<usize> = [1, 2, 4, 8, 16].into_iter().map(low_water).collect();
        assert_eq!(marks, vec![0, 1, 2, 5, 11]);
    }

    #[test]
    fn a_full_channel_wakes_its_producer_at_its_low_water_mark() {
        let (tx, rx) = with_recheck::<u32>(8, NEVER);
        for i in 0..8 {
            tx.send(i).unwrap();
        }
        let (done, finished) = mpsc::channel();
        let producer = std::thread::spawn(move || {
            tx.send(8).unwrap();
            done.send(tx.len()).unwrap();
        });
        // Let the producer block, then take messages one at a time: it
        // must stay asleep (the 9th message not queued) until five remain.
        std::thread::sleep(Duration::from_millis(50));
        for expected in 0..2 {
            assert_eq!(rx.recv().unwrap(), expected);
            std::thread::sleep(Duration::from_millis(20));
            assert!(
                finished.try_recv().is_err(),
                "woken with {} queued",
                rx.inner.len()
            );
            assert_eq!(rx.inner.len(), 7 - expected as usize);
        }
        assert_eq!(rx.recv().unwrap(), 2); // five queued now: the low-water mark
        let queued_after = within_10s(&finished);
        assert_eq!(
            queued_after, 6,
            "the producer added its message to the 5 left"
        );
        producer.join().unwrap();
        let rest: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, vec![3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_producer_blocked_on_a_dropped_receiver_fails_at_once() {
        let (tx, rx) = with_recheck::<u32>(2, NEVER);
        tx.send(0).unwrap();
        tx.send(1).unwrap();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            done.send(tx.send(2).is_err()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert!(
            within_10s(&finished),
            "sending into a channel with no receiver fails"
        );
    }

    #[test]
    fn every_message_arrives_in_order_through_a_slow_and_a_fast_consumer() {
        // On its own thread: a lost wake-up hangs it, and fails the test.
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            every_message_arrives_in_order();
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("no producer was left asleep");
    }

    fn every_message_arrives_in_order() {
        for capacity in [1, 2, 3, 16] {
            let (tx, rx) = with_recheck::<u64>(capacity, NEVER);
            let n = 20_000u64;
            let producer = std::thread::spawn(move || {
                for i in 0..n {
                    tx.send(i).unwrap();
                }
            });
            let mut select_turn = false;
            for expected in 0..n {
                // Alternate the two ways a task takes a message.
                let got = if select_turn {
                    let mut select = Select::new();
                    rx.select_on(&mut select);
                    let operation = select.select();
                    rx.recv_selected(operation).unwrap()
                } else {
                    rx.recv().unwrap()
                };
                select_turn = !select_turn;
                assert_eq!(got, expected, "capacity {capacity}");
                if expected % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            producer.join().unwrap();
            assert!(rx.recv().is_err(), "the producer is gone");
        }
    }

    #[test]
    fn a_producer_that_finds_room_leaves_another_ones_wake_up_alone() {
        let (tx, rx) = with_recheck::<u32>(2, NEVER); // low water: 1
        tx.send(0).unwrap();
        tx.send(1).unwrap();
        let (done, finished) = mpsc::channel();
        let asleep = tx.clone();
        std::thread::spawn(move || {
            asleep.send(2).unwrap();
            done.send(()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        // A take, and before the consumer looks for a producer to wake, a
        // second producer that was about to wait finds room and goes on.
        assert_eq!(rx.inner.try_recv().unwrap(), 0);
        tx.wait_for_room();
        rx.taken();
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the sleeping producer was woken");
    }
}
