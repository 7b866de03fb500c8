//! The one retry policy: exponential backoff with jitter. Segment claims, the catalog and the
//! object store (through object_store's own client, configured from [`Backoff::STORE`]) wait
//! between attempts by it; nothing sleeps a worker thread (every wait is a tokio sleep).

use std::time::Duration;

/// Exponential backoff: `first`, doubling up to `max`, each wait plus a random share (up to
/// `jitter` of it) so that many waiters do not retry in step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// 0.0–1.0: the largest share of a wait added at random.
    pub jitter: f64,
}

impl Backoff {
    /// Segment claims: a handful of quick attempts (the store's client retries underneath).
    pub(crate) const CLAIMS: Backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(16),
        jitter: 0.5,
    };
    /// The catalog: retried without end while it is unreachable (fetching pauses meanwhile).
    pub(crate) const CATALOG: Backoff = Backoff {
        first: Duration::from_millis(200),
        max: Duration::from_secs(30),
        jitter: 0.5,
    };
    /// Each request to the object store, within `storage.retry_timeout`.
    pub(crate) const STORE: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(15),
        jitter: 1.0,
    };

    /// The waits, one per retry.
    pub(crate) fn delays(self) -> Delays {
        Delays {
            policy: self,
            next: self.first,
        }
    }

    /// The same policy for object_store's client (which draws its own jitter).
    pub(crate) fn for_object_store(self) -> object_store::BackoffConfig {
        object_store::BackoffConfig {
            init_backoff: self.first,
            max_backoff: self.max,
            base: 2.0,
        }
    }
}

/// The waits of one series of retries.
#[derive(Debug)]
pub(crate) struct Delays {
    policy: Backoff,
    next: Duration,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(self.policy.max);
        Some(base + base.mul_f64(rand::random::<f64>() * self.policy.jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_bounded_jitter() {
        let waits: Vec<Duration> = Backoff::CATALOG.delays().take(12).collect();
        let mut base = Backoff::CATALOG.first;
        for w in waits {
            assert!(w >= base && w <= base.mul_f64(1.5), "{w:?} for {base:?}");
            base = (base * 2).min(Backoff::CATALOG.max);
        }
        assert_eq!(base, Backoff::CATALOG.max);
    }
}
