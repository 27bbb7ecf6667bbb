//! Reading egress logs: by offset, with a long-poll for the next records
//! ([`Runtime::read_egress`]) and as a stream ([`Runtime::egress_stream`]).

use std::{sync::Arc, time::Duration};

use super::{Egress, EgressRecord, Sink, check_name};
use crate::{Error, Runtime};

impl Egress {
    /// Up to `limit` records of `log` from offset `from` (blocking in durable mode).
    pub(crate) fn read(
        &self,
        log: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<EgressRecord>, Error> {
        match &self.sink {
            Sink::Memory(logs) => {
                let cutoff = self.clock.now_ms().saturating_sub(self.retention_ms);
                Ok(logs
                    .lock()
                    .get(log)
                    .map(|l| {
                        l.range(from..)
                            .map(|(_, r)| r)
                            .filter(|r| r.at_ms >= cutoff)
                            .take(limit)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default())
            }
            Sink::Durable(sink) => sink.read(log, from, limit),
        }
    }
}

impl Runtime {
    /// Up to `limit` records of egress log `log` from offset `from`. If there
    /// are none yet, waits up to `wait` for the first (long-poll); once the
    /// runtime shuts down, it returns what there is at once.
    ///
    /// In durable mode a record is readable shortly after its invocation's
    /// reply: the appender stores it with its own `fdatasync`, so that an
    /// offset, once read, never changes. In memory it is readable at once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for an invalid log name, [`Error::Storage`]
    /// when the store cannot be read.
    pub async fn read_egress(
        &self,
        log: &str,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<EgressRecord>, Error> {
        check_name(log)?;
        let egress = Arc::clone(&self.inner().egress);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let appended = egress.appended_notify.notified();
            let (reader, name) = (Arc::clone(&egress), log.to_owned());
            let records = tokio::task::spawn_blocking(move || reader.read(&name, from, limit))
                .await
                .map_err(|e| Error::Thread {
                    what: format!("an egress read did not finish: {e}"),
                    source: None,
                })??;
            if !records.is_empty()
                || tokio::time::Instant::now() >= deadline
                || egress.readers_closed()
            {
                return Ok(records);
            }
            // Appends made by other nodes (cluster mode) wake nobody here.
            let until = match egress.poll_interval() {
                Some(poll) => deadline.min(tokio::time::Instant::now() + poll),
                None => deadline,
            };
            let _ = tokio::time::timeout_at(until, appended).await;
        }
    }

    /// The records of egress log `log` from offset `from` on, as a stream
    /// that waits for new ones (it ends only on an error).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # #[stateful_function]
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # pub struct Order { n: u32 }
    /// # #[stateful_function]
    /// # impl Order { #[handler] pub fn ship(&mut self, ctx: &mut Context) { self.n += 1; ctx.emit("shipped", &self.n); } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// use futures::StreamExt;
    /// let runtime = Runtime::builder().in_memory().register::<Order>().open().await?;
    /// let mut shipped = Box::pin(runtime.egress_stream("shipped", 0));
    /// runtime.handle::<Order>("o").ship().await?;
    /// let first = shipped.next().await.expect("a record")?;
    /// assert_eq!((first.offset, first.record), (0, serde_json::json!(1)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn egress_stream(
        &self,
        log: &str,
        from: u64,
    ) -> impl futures::Stream<Item = Result<EgressRecord, Error>> + Send + 'static {
        let runtime = self.clone();
        let log = log.to_owned();
        futures::stream::unfold(
            (
                runtime,
                log,
                from,
                std::collections::VecDeque::<EgressRecord>::new(),
                false,
            ),
            |(runtime, log, next, mut buffered, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    if let Some(record) = buffered.pop_front() {
                        let next = next.max(record.offset + 1);
                        return Some((Ok(record), (runtime, log, next, buffered, false)));
                    }
                    match runtime
                        .read_egress(&log, next, 256, Duration::from_secs(30))
                        .await
                    {
                        Ok(records) => buffered.extend(records),
                        Err(e) => return Some((Err(e), (runtime, log, next, buffered, true))),
                    }
                }
            },
        )
    }
}
