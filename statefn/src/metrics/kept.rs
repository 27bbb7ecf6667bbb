//! Metric handles kept across records, so that a hot path asks the
//! recorder for a metric once, not on every record.
//!
//! Asking is what costs: the Prometheus recorder copies the key
//! (`Key::to_retained`, an allocation per owned label), hashes it and
//! looks it up in its registry on every `register_*`, ~700 instructions;
//! a request over HTTP asked ten times (issue 14).
//!
//! A handle belongs to the recorder that gave it, so it is kept only for a
//! recorder that lives as long as the process: the global one (or the no-op
//! one in effect before any is installed). Its address is learnt when the
//! runtime opens and when the ingress installs its recorder
//! ([`learn_global_recorder`]); a recorder at any other address (a local one
//! of `metrics::with_local_recorder`, whose memory another recorder may take
//! after it is dropped, or a global one installed by someone else after the
//! runtime opened) is asked on every record, as before. A handle kept for
//! the no-op recorder is replaced on the first record after a real one is
//! installed: every later count reaches it.

use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, Recorder};

use super::labelled::METADATA;

/// The address of the recorder that a thread without a local recorder
/// uses, or 0 before it is learnt.
static GLOBAL_RECORDER: AtomicUsize = AtomicUsize::new(0);

/// Learns which recorder is the process's global one (see the module
/// docs). Call it after installing one.
pub(crate) fn learn_global_recorder() {
    // A new thread has no local recorder: what it sees is the global one.
    // If no thread can be started, nothing is kept: every record asks.
    let probe = std::thread::Builder::new()
        .name("statefn-metrics-probe".into())
        .spawn(|| metrics::with_recorder(address_of));
    if let Ok(Ok(address)) = probe.map(std::thread::JoinHandle::join) {
        GLOBAL_RECORDER.store(address, Ordering::Relaxed);
    }
}

/// A recorder's identity: its address (what lives there is never moved).
fn address_of(recorder: &dyn Recorder) -> usize {
    std::ptr::from_ref(recorder).cast::<()>().addr()
}

/// A kind of metric handle: how a recorder gives one.
pub(crate) trait Handle: Sized {
    /// Asks `recorder` for the handle of `key`.
    fn register(recorder: &dyn Recorder, key: &Key) -> Self;
}

impl Handle for Counter {
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_counter(key, &METADATA)
    }
}

impl Handle for Gauge {
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_gauge(key, &METADATA)
    }
}

impl Handle for Histogram {
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_histogram(key, &METADATA)
    }
}

/// One metric's key and, once the global recorder gave it, its handle.
pub(crate) struct Kept<H> {
    key: Key,
    /// The handle and the address of the recorder that gave it.
    handle: Option<(usize, H)>,
}

impl<H> std::fmt::Debug for Kept<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("key", &self.key)
            .field("kept", &self.handle.is_some())
            .finish()
    }
}

impl<H: Handle> Kept<H> {
    /// `key`, with no handle yet.
    pub(crate) fn new(key: Key) -> Self {
        Kept { key, handle: None }
    }

    /// Runs `record` on the handle of the recorder in effect: the kept one
    /// if that recorder is the global one that gave it, else one asked for
    /// now (and kept if the recorder is the global one).
    pub(crate) fn record(&mut self, record: impl FnOnce(&H)) {
        metrics::with_recorder(|recorder| {
            let address = address_of(recorder);
            if address != GLOBAL_RECORDER.load(Ordering::Relaxed) {
                return record(&H::register(recorder, &self.key));
            }
            match &self.handle {
                Some((kept, handle)) if *kept == address => record(handle),
                _ => {
                    let handle = H::register(recorder, &self.key);
                    record(&handle);
                    self.handle = Some((address, handle));
                }
            }
        });
    }
}
