//! Where a background thread or task reports the error the daemon cannot go on after. The
//! first one is kept, and once one is set nothing more is committed; the pipeline stops and
//! returns it ([`crate::Error::from_fatal`]). A leaf module: the stages report through it
//! without knowing the crate's top-level error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Any stage's error, as reported.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The first fatal error any background task hit; once set, the daemon stops without
/// committing anything more.
#[derive(Debug, Default)]
pub struct Fatal {
    set: AtomicBool,
    error: Mutex<Option<BoxError>>,
}

impl Fatal {
    /// Reports an error that must stop the daemon (the first one is kept and logged).
    pub fn set(&self, e: impl Into<BoxError>) {
        let e = e.into();
        let mut slot = self.error.lock().expect("fatal lock");
        if slot.is_none() {
            tracing::error!(error = %e, "fatal");
            *slot = Some(e);
        }
        self.set.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// The error's message, while it stays here to be taken.
    pub fn describe(&self) -> String {
        self.error
            .lock()
            .expect("fatal lock")
            .as_ref()
            .map_or_else(|| "a stage failed".to_string(), |e| e.to_string())
    }

    pub fn take(&self) -> Option<BoxError> {
        self.error.lock().expect("fatal lock").take()
    }
}
