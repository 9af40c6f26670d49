//! Knowing when every outcome message of the puts made before a `flush` or `stop` has been sent.
//!
//! Each accepted put spawns a task that awaits the record's outcome and sends it to the caller.
//! `Producer::flush` returns once the records are resolved, but those tasks may not have sent
//! their messages yet; `flush/1` and `stop/1` promise the messages are in the callers' mailboxes
//! when they return. So each delivery task holds a [`Token`] of the current generation, and
//! [`Deliveries::settled`] starts a new generation and waits until every token of the old one
//! (and of every older one) is dropped.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::mpsc;

/// Held by a delivery task until its message is sent.
#[derive(Debug)]
pub struct Token {
    _generation: mpsc::Sender<()>,
}

struct Generation {
    /// Cloned into each token; nothing is ever sent on it: the receiver only waits for every
    /// sender to be dropped.
    sender: mpsc::Sender<()>,
    receiver: mpsc::Receiver<()>,
}

impl Generation {
    fn new() -> Self {
        let (sender, receiver) = mpsc::channel(1);
        Generation { sender, receiver }
    }
}

/// The generations of outstanding deliveries of one producer.
pub struct Deliveries {
    current: Mutex<Generation>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            current: Mutex::new(Generation::new()),
        }
    }
}

impl Deliveries {
    /// A token of the current generation, for a delivery starting now.
    pub fn token(&self) -> Token {
        Token {
            _generation: self.lock().sender.clone(),
        }
    }

    /// Resolves once every token handed out before this call is dropped.
    ///
    /// The generation is switched now, synchronously, so later tokens are not waited for; the
    /// returned future holds a token of the new generation until the old one settles, so a later
    /// `settled` also waits for everything this one waits for.
    pub fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        let old = std::mem::replace(&mut *self.lock(), Generation::new());
        let chain = self.token();
        async move {
            let Generation {
                sender,
                mut receiver,
            } = old;
            drop(sender);
            // `None` once every sender (token) of the old generation is gone.
            while receiver.recv().await.is_some() {}
            drop(chain);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generation> {
        // A panic while holding this lock cannot leave the generation half-swapped.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn settles_at_once_without_tokens() {
        let deliveries = Deliveries::default();
        timeout(SHORT, deliveries.settled()).await.unwrap();
    }

    #[tokio::test]
    async fn waits_for_earlier_tokens_only() {
        let deliveries = Deliveries::default();
        let early = deliveries.token();
        let settled = tokio::spawn(deliveries.settled());
        let late = deliveries.token();
        tokio::time::sleep(SHORT).await;
        assert!(
            !settled.is_finished(),
            "settled before an earlier token was dropped"
        );
        drop(early);
        timeout(SHORT, settled).await.unwrap().unwrap();
        drop(late);
    }

    #[tokio::test]
    async fn a_later_settle_also_waits_for_older_generations() {
        let deliveries = Deliveries::default();
        let oldest = deliveries.token();
        let first = tokio::spawn(deliveries.settled());
        let middle = deliveries.token();
        let second = tokio::spawn(deliveries.settled());
        drop(middle);
        tokio::time::sleep(SHORT).await;
        assert!(
            !second.is_finished(),
            "the second settle ignored the first generation"
        );
        drop(oldest);
        timeout(SHORT, first).await.unwrap().unwrap();
        timeout(SHORT, second).await.unwrap().unwrap();
    }
}
