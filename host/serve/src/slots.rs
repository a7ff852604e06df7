//! Who runs next: the server's slots (one per core by default), shared by
//! every model it serves.
//!
//! Any model may take any free slot, so a server with one busy model keeps
//! every core on it. Two rules keep one model from shutting the others out:
//! - **fewest first**: a slot that comes free goes to the waiting request
//!   whose model holds the fewest slots (the oldest request among equals),
//!   not to whichever model has the most requests queued;
//! - **probation**: a model whose last call ran into its deadline may hold
//!   one slot, no more, until one of its calls ends in time. A component
//!   that spins on every request otherwise holds every core for a whole
//!   deadline at a time, and every other model's requests give up waiting
//!   (503). On probation it costs the others one core; the first overrun,
//!   before anything is known of the model, is paid once.
//!
//! A request that gives up waiting (its future is dropped) leaves nothing
//! behind: its place is skipped, and a slot handed to it as it left goes to
//! the next waiter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The slots and who holds them. Models are numbered `0..models`.
#[derive(Clone)]
pub(crate) struct Slots {
    state: Arc<Mutex<State>>,
}

struct State {
    /// Slots in all, free or held.
    total: usize,
    free: usize,
    /// Slots each model holds now.
    held: Vec<usize>,
    /// Models whose last call ran into its deadline.
    probation: Vec<bool>,
    /// Requests waiting for a slot, oldest first.
    waiting: VecDeque<Waiter>,
}

struct Waiter {
    model: usize,
    grant: oneshot::Sender<Permit>,
}

/// A held slot; dropping it frees the slot for the next waiter.
pub(crate) struct Permit {
    slots: Slots,
    model: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut state = self.slots.lock();
            state.held[self.model] -= 1;
            state.free += 1;
        }
        self.slots.dispatch();
    }
}

impl State {
    /// Most slots `model` may hold.
    fn limit(&self, model: usize) -> usize {
        if self.probation[model] { 1 } else { self.total }
    }
}

impl Slots {
    /// `total` slots (at least one) for `models` models.
    pub fn new(total: usize, models: usize) -> Slots {
        Slots {
            state: Arc::new(Mutex::new(State {
                total: total.max(1),
                free: total.max(1),
                held: vec![0; models],
                probation: vec![false; models],
                waiting: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for `model`, when the rules above give it one.
    pub async fn acquire(&self, model: usize) -> Permit {
        let (grant, granted) = oneshot::channel();
        self.lock().waiting.push_back(Waiter { model, grant });
        self.dispatch();
        // The sender lives in the queue until a permit is sent through it.
        granted
            .await
            .expect("a waiter leaves the queue only with a permit")
    }

    /// Hands free slots to waiting requests, fewest-held model first.
    fn dispatch(&self) {
        loop {
            let (waiter, permit) = {
                let mut state = self.lock();
                state.waiting.retain(|w| !w.grant.is_closed());
                if state.free == 0 {
                    return;
                }
                let next = state
                    .waiting
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| state.held[w.model] < state.limit(w.model))
                    .min_by_key(|(i, w)| (state.held[w.model], *i))
                    .map(|(i, _)| i);
                let Some(i) = next else { return };
                let waiter = state.waiting.remove(i).expect("index from the queue");
                state.free -= 1;
                state.held[waiter.model] += 1;
                let permit = Permit {
                    slots: self.clone(),
                    model: waiter.model,
                };
                (waiter, permit)
            };
            // Sent outside the lock: a waiter that has just left drops the
            // permit, which frees the slot again (and dispatches).
            let _ = waiter.grant.send(permit);
        }
    }

    /// How `model`'s last call ended: past its deadline or not. Returns
    /// whether its probation changed (for the log and `/metrics`).
    pub fn ended(&self, model: usize, overran: bool) -> bool {
        let changed = {
            let mut state = self.lock();
            let was = std::mem::replace(&mut state.probation[model], overran);
            was != overran
        };
        if changed && !overran {
            // Its waiting requests may take more slots again.
            self.dispatch();
        }
        changed
    }

    /// Whether `model` is on probation now.
    pub fn on_probation(&self, model: usize) -> bool {
        self.lock().probation[model]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Polls a future once: its value when ready.
    fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_model_holding_fewest() {
        let slots = Slots::new(2, 2);
        let a1 = now(slots.acquire(0)).expect("free");
        let _a2 = now(slots.acquire(0)).expect("free: one busy model takes every slot");
        // Model 0 asks again before model 1 does; model 1 holds nothing.
        let (s0, s1) = (slots.clone(), slots.clone());
        let third = tokio::spawn(async move { s0.acquire(0).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let other = tokio::spawn(async move { s1.acquire(1).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a1);
        let other = other.await.unwrap();
        assert_eq!(other.model, 1, "model 1 held none");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !third.is_finished(),
            "model 0 still holds one, and none is free"
        );
        drop(other);
        assert_eq!(third.await.unwrap().model, 0, "then model 0's turn");
    }

    #[tokio::test]
    async fn a_model_on_probation_holds_one_slot_until_a_call_ends_in_time() {
        let slots = Slots::new(2, 2);
        assert!(slots.ended(0, true), "probation begins");
        assert!(!slots.ended(0, true), "and goes on");
        let held = now(slots.acquire(0)).expect("free");
        let s0 = slots.clone();
        let second = tokio::spawn(async move { s0.acquire(0).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "one slot is free, but not for model 0"
        );
        let other = now(slots.acquire(1)).expect("the free slot is model 1's");
        drop(other);
        // A call in time lifts it: the waiting request takes the free slot.
        assert!(slots.ended(0, false));
        assert_eq!(second.await.unwrap().model, 0);
        assert!(!slots.on_probation(0));
        drop(held);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_leaves_no_slot_behind() {
        let slots = Slots::new(1, 1);
        let held = now(slots.acquire(0)).expect("free");
        let gave_up = tokio::time::timeout(Duration::from_millis(20), slots.acquire(0)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert!(
            now(slots.acquire(0)).is_some(),
            "the slot is free again, not handed to the one who left"
        );
    }
}
