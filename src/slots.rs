//! Request slots: how many Vault requests are in flight at once, shared
//! by what the user asks for and what is fetched ahead of it (prefetch).
//!
//! A slot that frees goes to a waiting user request first; background
//! work only ever takes a slot no user request is waiting for. So a walk
//! can keep every slot busy with prefetches while a user request never
//! waits behind more than the requests already in flight. The limit may
//! change while slots are held (see `vault::limit`): a lower one is
//! reached as requests finish, never by cancelling one.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Who a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A user is waiting for it.
    User,
    /// Fetched ahead of use; only takes slots no user request waits for.
    Background,
}

tokio::task_local! {
    /// Set on tasks doing background work; its cell holds a slot the task
    /// acquired before starting the fetch, for the fetch's first request.
    static BACKGROUND: RefCell<Option<Permit>>;
}

/// Runs `f` as background work, its first request in the slot `permit`.
pub async fn background<F: Future>(permit: Permit, f: F) -> F::Output {
    BACKGROUND.scope(RefCell::new(Some(permit)), f).await
}

/// The priority of requests made by the current task.
pub fn priority() -> Priority {
    match BACKGROUND.try_with(|_| ()) {
        Ok(()) => Priority::Background,
        Err(_) => Priority::User,
    }
}

pub struct Slots {
    state: Mutex<State>,
}

struct State {
    limit: usize,
    in_flight: usize,
    /// Waiting acquirers, user requests first.
    user: VecDeque<oneshot::Sender<()>>,
    background: VecDeque<oneshot::Sender<()>>,
    /// The most slots ever held at once (for the limiter and tests).
    peak: usize,
}

/// A held slot, released when dropped.
pub struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit")
    }
}

impl Slots {
    pub fn new(limit: usize) -> Arc<Slots> {
        Arc::new(Slots {
            state: Mutex::new(State {
                limit: limit.max(1),
                in_flight: 0,
                user: VecDeque::new(),
                background: VecDeque::new(),
                peak: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("slots lock")
    }

    /// A slot for the current task's request: the one its background fetch
    /// was started in, if not yet used, else one at the task's priority.
    pub async fn acquire_for_request(self: &Arc<Self>) -> Permit {
        if let Ok(Some(p)) = BACKGROUND.try_with(|held| held.borrow_mut().take()) {
            return p;
        }
        self.acquire(priority()).await
    }

    /// A slot at `priority`, waiting for one if none is free (or, for
    /// background work, if a user request is waiting).
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        let rx = {
            let mut s = self.lock();
            let free = s.in_flight < s.limit;
            let first = match priority {
                Priority::User => s.user.is_empty(),
                Priority::Background => s.user.is_empty() && s.background.is_empty(),
            };
            if free && first {
                s.take();
                return Permit {
                    slots: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            match priority {
                Priority::User => s.user.push_back(tx),
                Priority::Background => s.background.push_back(tx),
            }
            rx
        };
        let mut waiting = Waiting {
            rx,
            slots: self,
            granted: false,
        };
        // The sender lives in the queue until it is granted: never Err.
        let _ = (&mut waiting.rx).await;
        waiting.granted = true;
        Permit {
            slots: self.clone(),
        }
    }

    fn release(&self) {
        let mut s = self.lock();
        s.in_flight -= 1;
        s.grant();
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Set the limit (at least 1); more waiters are let in at once if it
    /// grew, and none until enough requests finish if it shrank.
    pub fn set_limit(&self, limit: usize) {
        let mut s = self.lock();
        s.limit = limit.max(1);
        s.grant();
    }

    /// Slots held now, and the most ever held at once.
    pub fn in_flight(&self) -> (usize, usize) {
        let s = self.lock();
        (s.in_flight, s.peak)
    }
}

impl State {
    fn take(&mut self) {
        self.in_flight += 1;
        self.peak = self.peak.max(self.in_flight);
    }

    /// Hand free slots to waiters, user requests first. A waiter that gave
    /// up (its receiver dropped) is skipped.
    fn grant(&mut self) {
        while self.in_flight < self.limit {
            let Some(tx) = self
                .user
                .pop_front()
                .or_else(|| self.background.pop_front())
            else {
                return;
            };
            if tx.send(()).is_ok() {
                self.take();
            }
        }
    }
}

/// An acquirer waiting for its grant. Dropped before it took the grant
/// (its request was cancelled), it gives a grant already sent back.
struct Waiting<'a> {
    rx: oneshot::Receiver<()>,
    slots: &'a Slots,
    granted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            self.slots.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// Background work may fill every slot, and a user request still gets
    /// the first slot that frees, ahead of background work queued earlier.
    #[tokio::test(start_paused = true)]
    async fn user_requests_go_first() {
        let slots = Slots::new(4);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(slots.acquire(Priority::Background).await);
        }
        assert_eq!(slots.in_flight(), (4, 4));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, p) in [
            ("bg1", Priority::Background),
            ("bg2", Priority::Background),
            ("user", Priority::User),
        ] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = slots.acquire(p).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(permit);
            }));
            settle().await;
        }
        drop(held.pop());
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["user"]);
        held.clear();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["user", "bg1", "bg2"]);
        assert_eq!(slots.in_flight(), (0, 4));
    }

    /// A background acquirer does not overtake a waiting user request even
    /// when a slot is free at the moment it asks (the slot is the user's).
    #[tokio::test(start_paused = true)]
    async fn background_never_jumps_a_waiting_user() {
        let slots = Slots::new(1);
        let first = slots.acquire(Priority::User).await;
        let s = slots.clone();
        let user = tokio::spawn(async move { s.acquire(Priority::User).await });
        settle().await;
        slots.set_limit(2);
        settle().await;
        assert!(user.is_finished(), "the new slot went to the waiting user");
        let s = slots.clone();
        let bg = tokio::spawn(async move { s.acquire(Priority::Background).await });
        settle().await;
        assert!(!bg.is_finished());
        drop(first);
        settle().await;
        assert!(bg.is_finished());
        drop(user.await.unwrap());
        drop(bg.await.unwrap());
        assert_eq!(slots.in_flight().0, 0);
    }

    /// A lower limit is reached as requests finish; a cancelled waiter,
    /// granted or not, leaks no slot.
    #[tokio::test(start_paused = true)]
    async fn limit_changes_and_cancellation_keep_the_count() {
        let slots = Slots::new(3);
        let a = slots.acquire(Priority::User).await;
        let b = slots.acquire(Priority::User).await;
        let c = slots.acquire(Priority::User).await;
        slots.set_limit(1);
        drop(a);
        let s = slots.clone();
        let waiter = tokio::spawn(async move { s.acquire(Priority::User).await });
        settle().await;
        assert!(!waiter.is_finished(), "2 held, limit 1");
        drop(b);
        settle().await;
        assert!(!waiter.is_finished(), "1 held, limit 1");
        // Cancelled while waiting.
        waiter.abort();
        settle().await;
        drop(c);
        assert_eq!(slots.in_flight().0, 0);
        // Cancelled after its grant was sent, before it ran.
        let held = slots.acquire(Priority::User).await;
        let s = slots.clone();
        let waiter = tokio::spawn(async move { s.acquire(Priority::User).await });
        settle().await;
        drop(held);
        waiter.abort();
        settle().await;
        assert_eq!(slots.in_flight().0, 0);
        let again = slots.acquire(Priority::User).await;
        assert_eq!(slots.in_flight().0, 1);
        drop(again);
    }

    /// A background task's first request uses the slot it was started in;
    /// its next (a retry) waits like any background request.
    #[tokio::test(start_paused = true)]
    async fn a_background_fetch_starts_in_its_own_slot() {
        let slots = Slots::new(1);
        let permit = slots.acquire(Priority::Background).await;
        let s = slots.clone();
        background(permit, async move {
            assert_eq!(priority(), Priority::Background);
            let first = s.acquire_for_request().await;
            assert_eq!(s.in_flight().0, 1);
            drop(first);
            let retry = s.acquire_for_request().await;
            assert_eq!(s.in_flight().0, 1);
            drop(retry);
        })
        .await;
        assert_eq!(priority(), Priority::User);
        assert_eq!(slots.in_flight(), (0, 1));
    }
}
