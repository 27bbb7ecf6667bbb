//! The names of a cluster's NATS objects, in one place (`c` is the cluster
//! name, `NNNN` a log group):
//!
//! | object | name |
//! | --- | --- |
//! | log of group `NNNN` | stream `statefn-c-gNNNN` (see `jetstream_log`) |
//! | shared configuration | KV bucket `statefn-c-meta`, key `config` |
//! | group owners | KV bucket `statefn-c-owners`, key `gNNNN` = `{node, epoch}` |
//! | snapshots of group `NNNN` | object store `statefn-c-snapshots`, object `gNNNN` |
//! | heartbeats | subject `statefn.c.hb` |
//! | calls forwarded to the owner of a group | `statefn.c.g.NNNN.call` (request/reply) |
//! | messages between functions, to the receiver's group | `statefn.c.g.NNNN.mail` |
//! | acks, to the sender's group | `statefn.c.g.NNNN.ack` |
//! | re-send requests, to the sender's group | `statefn.c.g.NNNN.resend` |
//! | egress log `name` | stream `statefn-c-egress-<name>`, subject `statefn.c.egress.<name>.<shard>` |
//!
//! Egress log names may hold `.` and `_`, which mean something in subjects
//! and stream names: they are escaped (`_2E`, `_5F`), and a name longer
//! than 64 bytes once escaped is replaced by a hash of it.

use statefn_store::LogGroupId;

use crate::protocol::ids::ShardId;

/// The names of one cluster's objects.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    cluster: String,
}

impl Names {
    pub(crate) fn new(cluster: &str) -> Self {
        Names {
            cluster: cluster.to_owned(),
        }
    }

    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    pub(crate) fn meta_bucket(&self) -> String {
        format!("statefn-{}-meta", self.cluster)
    }

    pub(crate) fn owners_bucket(&self) -> String {
        format!("statefn-{}-owners", self.cluster)
    }

    pub(crate) fn snapshots_bucket(&self) -> String {
        format!("statefn-{}-snapshots", self.cluster)
    }

    /// The owners bucket's key of `group`, and its snapshot's object name.
    pub(crate) fn owner_key(group: LogGroupId) -> String {
        format!("g{:04}", group.0)
    }

    /// The group of an owners bucket key.
    pub(crate) fn group_of_key(key: &str) -> Option<LogGroupId> {
        key.strip_prefix('g')?.parse().ok().map(LogGroupId)
    }

    pub(crate) fn heartbeats(&self) -> String {
        format!("statefn.{}.hb", self.cluster)
    }

    fn group_subject(&self, group: LogGroupId, what: &str) -> String {
        format!("statefn.{}.g.{:04}.{what}", self.cluster, group.0)
    }

    /// Where calls forwarded to `group` go while `node` owns it: only the
    /// node the owners table names gets them, never a deposed owner that
    /// still listens (a paused process keeps its subscriptions).
    pub(crate) fn call(&self, group: LogGroupId, node: &str) -> String {
        format!("{}.{node}", self.group_subject(group, "call"))
    }

    pub(crate) fn mail(&self, group: LogGroupId) -> String {
        self.group_subject(group, "mail")
    }

    pub(crate) fn ack(&self, group: LogGroupId) -> String {
        self.group_subject(group, "ack")
    }

    pub(crate) fn resend(&self, group: LogGroupId) -> String {
        self.group_subject(group, "resend")
    }

    pub(crate) fn egress_stream(&self, log: &str) -> String {
        format!("statefn-{}-egress-{}", self.cluster, escape(log))
    }

    /// Every subject of egress log `log` (the stream's filter).
    pub(crate) fn egress_subjects(&self, log: &str) -> String {
        format!("statefn.{}.egress.{}.*", self.cluster, escape(log))
    }

    /// Where `shard`'s records of `log` go: its last message tells how far
    /// the shard's records were stored.
    pub(crate) fn egress_subject(&self, log: &str, shard: ShardId) -> String {
        format!(
            "statefn.{}.egress.{}.{}",
            self.cluster,
            escape(log),
            shard.0
        )
    }
}

/// An egress log name as one subject token and stream name part.
fn escape(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    for c in log.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
        } else {
            out.push_str(&format!("_{:02X}", u32::from(c)));
        }
    }
    if out.len() > 64 {
        return format!("h{:016x}", fnv1a(log.as_bytes()));
    }
    out
}

/// FNV-1a, 64 bits: a hash that is the same in every process and build.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_egress_names_cannot_collide() {
        let names = Names::new("bank");
        assert_eq!(
            names.call(LogGroupId(7), "n1"),
            "statefn.bank.g.0007.call.n1"
        );
        assert_eq!(Names::owner_key(LogGroupId(7)), "g0007");
        assert_eq!(Names::group_of_key("g0007"), Some(LogGroupId(7)));
        assert_eq!(
            names.egress_stream("orders.v1"),
            "statefn-bank-egress-orders_2Ev1"
        );
        assert_eq!(
            names.egress_subject("orders.v1", ShardId(3)),
            "statefn.bank.egress.orders_2Ev1.3"
        );
        // `_` is escaped too, so `a_2Eb` and `a.b` differ.
        assert_ne!(names.egress_stream("a.b"), names.egress_stream("a_2Eb"));
        let long = "x.".repeat(60);
        let escaped = names.egress_stream(&long);
        assert!(escaped.len() < 100, "{escaped}");
        assert_eq!(escaped, names.egress_stream(&long));
    }
}
