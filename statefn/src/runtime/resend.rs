//! The last step of recovery: a rebuilt shard re-sends its unacknowledged
//! outbox (the receivers' watermarks drop what they had), re-arms its
//! timers, and, after a failure, asks every other shard to re-send what it
//! may have lost; then it serves again.

use super::RuntimeInner;
use crate::{
    protocol::{envelope::Mail, ids::ShardId, outbox::envelope_of, record::Sent},
    shard::ShardCore,
    timers::TimerArm,
};

impl RuntimeInner {
    /// Installs a core rebuilt after a log failure and resumes its shard.
    pub(crate) fn resume_recovered(&self, core: ShardCore) {
        let shard = core.id;
        let outbox: Vec<Sent> = core.outbox.entries().cloned().collect();
        let timers = core.timer_arms();
        let egress = core.emitted.pending().cloned().collect();
        if let Some(target) = self.shard(shard) {
            target.install(core);
        }
        self.egress.submit(egress);
        self.after_recovery(shard, outbox, timers, true);
    }

    /// After a shard was rebuilt: re-send its unacknowledged outbox, re-arm
    /// its timers, and (after a failure) ask every other shard to re-send
    /// what the recovered one may have lost. Then let it serve.
    pub(crate) fn after_recovery(
        &self,
        shard: ShardId,
        outbox: Vec<Sent>,
        timers: Vec<TimerArm>,
        ask_senders: bool,
    ) {
        let shards = self.shard_count();
        for sent in outbox {
            let dest = sent.dest;
            debug_assert_eq!(sent.target.shard_id(shards), dest);
            self.enqueue(dest, Mail::Invoke(envelope_of(sent, shard)));
        }
        // The timer service holds each timer once: what the shard armed
        // before is replaced by what its rebuilt core holds.
        self.timers.replace_shard(shard, timers);
        if ask_senders {
            for other in self.shard_ids().filter(|&s| s != shard) {
                self.enqueue(
                    other,
                    Mail::Resend {
                        dest: shard,
                        from: None,
                    },
                );
            }
        }
        if self.shard(shard).is_some_and(|s| s.resume()) {
            self.scheduler.push(shard);
        }
    }
}
