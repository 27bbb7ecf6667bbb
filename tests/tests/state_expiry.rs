//! `#[stateful_function(expire_after = "..")]`: instances whose state has
//! not changed for that long are removed, durably, also across a restart;
//! instances still being written live on.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn::prelude::*;
use statefn_tests::eventually;

#[stateful_function(name = "test.Session", expire_after = "2s")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Session {
    touches: u32,
}

#[stateful_function]
impl Session {
    #[handler]
    fn touch(&mut self) -> u32 {
        self.touches += 1;
        self.touches
    }

    #[handler]
    fn touches(&self) -> u32 {
        self.touches
    }
}

async fn open(dir: &std::path::Path) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .register::<Session>()
        .open()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_expire_and_busy_ones_live_on() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    let idle = runtime.handle::<Session>("idle");
    let busy = runtime.handle::<Session>("busy");
    assert_eq!(idle.touch().await?, 1);
    // Written every 50 ms for 3 s, longer than the 2 s time to live: each
    // reply counting up shows it was never expired in between.
    for expected in 1..=60 {
        assert_eq!(busy.touch().await?, expected, "busy expired while in use");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(20, || async {
        (idle.touches().await.ok()? == 0).then_some(())
    })
    .await;
    runtime.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_pending_at_shutdown_happens_after_the_restart() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    runtime.handle::<Session>("s").touch().await?;
    runtime.shutdown().await?;
    let runtime = open(dir.path()).await?;
    let session = runtime.handle::<Session>("s");
    assert!(session.touches().await? <= 1);
    eventually(20, || async {
        (session.touches().await.ok()? == 0).then_some(())
    })
    .await;
    runtime.shutdown().await?;
    // The removal itself is durable.
    let runtime = open(dir.path()).await?;
    assert_eq!(runtime.handle::<Session>("s").touches().await?, 0);
    runtime.shutdown().await
}
