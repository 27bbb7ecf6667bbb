//! Membership: who is alive, from heartbeats on core NATS.
//!
//! Every node publishes a [`Heartbeat`] on `statefn.<c>.hb` every
//! `heartbeat_interval` and listens to everyone's. A node is **live** while
//! its last heartbeat is younger than `failure_timeout`. A node that just
//! started has heard nobody yet, so it declares no one dead before it has
//! listened for one `failure_timeout` (its start-up grace), and it is not
//! **ready** (given groups by placement) before then either.
//!
//! Liveness only decides who *should* own a group. A node wrongly thought
//! dead (paused, partitioned) loses its groups to a takeover, but it cannot
//! commit after the new owner's fence: safety never depends on these clocks.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use super::wire::{Following, Heartbeat};

/// What a node knows of the others.
#[derive(Debug)]
pub(crate) struct Membership {
    me: String,
    /// When this node started listening to heartbeats (`None`: not yet).
    listening: Mutex<Option<Instant>>,
    timeout: Duration,
    heard: Mutex<BTreeMap<String, Seen>>,
    /// The longest gap between two heartbeats of another node so far.
    longest_gap: Mutex<Duration>,
    /// The nodes found dead or draining at the last
    /// [`unavailable_changed`](Self::unavailable_changed).
    unavailable: Mutex<Vec<String>>,
    /// A node appeared, or its readiness or draining changed.
    pub(crate) changed: Notify,
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    beat: Heartbeat,
}

/// One node as `GET /admin/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node's id.
    pub node: String,
    /// Heard from within the failure timeout (always true for this node).
    pub live: bool,
    /// Past its start-up grace: placement gives it groups.
    pub ready: bool,
    /// Shutting down: handing its groups off.
    pub draining: bool,
    /// The log groups it says it serves.
    pub owned: Vec<u16>,
    /// Milliseconds since its last heartbeat arrived (0 for this node).
    pub last_heard_ms: u64,
}

impl Membership {
    pub(crate) fn new(me: &str, timeout: Duration) -> Self {
        Membership {
            me: me.to_owned(),
            listening: Mutex::new(None),
            timeout,
            heard: Mutex::new(BTreeMap::new()),
            unavailable: Mutex::new(Vec::new()),
            longest_gap: Mutex::new(Duration::ZERO),
            changed: Notify::new(),
        }
    }

    /// This node now hears heartbeats: the start-up grace begins (not at
    /// construction: opening the store may take longer than the grace, and
    /// a node that has not listened cannot tell the dead from the unheard).
    pub(crate) fn listening(&self) {
        self.listening.lock().get_or_insert_with(Instant::now);
    }

    /// Past the start-up grace: this node has listened long enough to tell
    /// the dead from the not yet heard.
    pub(crate) fn settled(&self) -> bool {
        self.listening
            .lock()
            .is_some_and(|at| at.elapsed() >= self.timeout)
    }

    /// A heartbeat arrived (this node's own included).
    pub(crate) fn heard(&self, beat: Heartbeat) {
        let now = Instant::now();
        let changed = {
            let mut heard = self.heard.lock();
            if beat.node != self.me
                && let Some(seen) = heard.get(&beat.node)
            {
                let gap = now.duration_since(seen.at);
                let mut longest = self.longest_gap.lock();
                if gap > *longest {
                    *longest = gap;
                    metrics::gauge!(crate::metrics::CLUSTER_HEARTBEAT_GAP_MAX)
                        .set(gap.as_secs_f64());
                }
            }
            let changed = heard.get(&beat.node).is_none_or(|seen| {
                seen.beat.ready != beat.ready
                    || seen.beat.draining != beat.draining
                    || now.duration_since(seen.at) >= self.timeout
            });
            heard.insert(beat.node.clone(), Seen { at: now, beat });
            changed
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    fn is_live_at(&self, seen: Option<&Seen>, now: Instant) -> bool {
        seen.is_some_and(|s| now.duration_since(s.at) < self.timeout)
    }

    /// Whether `node` is alive: this node always is; another while its
    /// heartbeats arrive, or (during the grace) if it was not heard yet.
    pub(crate) fn is_live(&self, node: &str) -> bool {
        if node == self.me {
            return true;
        }
        let heard = self.heard.lock();
        match heard.get(node) {
            Some(seen) => self.is_live_at(Some(seen), Instant::now()),
            None => !self.settled(),
        }
    }

    /// Whether the set of nodes heard from that are dead or draining
    /// changed since the last call (the manager asks every tick: death is
    /// the passing of time, not an event).
    pub(crate) fn unavailable_changed(&self) -> bool {
        let now = Instant::now();
        let current: Vec<String> = self
            .heard
            .lock()
            .values()
            .filter(|s| s.beat.node != self.me)
            .filter(|s| !self.is_live_at(Some(s), now) || s.beat.draining)
            .map(|s| s.beat.node.clone())
            .collect();
        let mut last = self.unavailable.lock();
        if *last == current {
            return false;
        }
        *last = current;
        true
    }

    /// The nodes placement gives groups to: live, ready and not draining,
    /// sorted. `me_ready` and `me_draining` describe this node.
    pub(crate) fn candidates(&self, me_ready: bool, me_draining: bool) -> Vec<String> {
        let now = Instant::now();
        let heard = self.heard.lock();
        let mut nodes: Vec<String> = heard
            .values()
            .filter(|s| s.beat.node != self.me)
            .filter(|s| self.is_live_at(Some(s), now) && s.beat.ready && !s.beat.draining)
            .map(|s| s.beat.node.clone())
            .collect();
        if me_ready && !me_draining {
            nodes.push(self.me.clone());
        }
        nodes.sort();
        nodes
    }

    /// The live nodes following `group` as standbys (this one excluded),
    /// with how far they are.
    pub(crate) fn following(&self, group: u16) -> Vec<(String, Following)> {
        let now = Instant::now();
        self.heard
            .lock()
            .values()
            .filter(|s| s.beat.node != self.me && self.is_live_at(Some(s), now))
            .filter_map(|s| {
                s.beat
                    .following
                    .iter()
                    .find(|f| f.group == group)
                    .map(|f| (s.beat.node.clone(), f.clone()))
            })
            .collect()
    }

    /// Every node heard from (and this one), for operators.
    pub(crate) fn status(&self, me: Heartbeat) -> Vec<NodeStatus> {
        let now = Instant::now();
        let heard = self.heard.lock();
        let mut nodes: Vec<NodeStatus> = heard
            .values()
            .filter(|s| s.beat.node != self.me)
            .map(|s| NodeStatus {
                node: s.beat.node.clone(),
                live: self.is_live_at(Some(s), now),
                ready: s.beat.ready,
                draining: s.beat.draining,
                owned: s.beat.owned.clone(),
                last_heard_ms: u64::try_from(now.duration_since(s.at).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect();
        nodes.push(NodeStatus {
            node: me.node,
            live: true,
            ready: me.ready,
            draining: me.draining,
            owned: me.owned,
            last_heard_ms: 0,
        });
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(node: &str, ready: bool, draining: bool) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            ready,
            draining,
            owned: Vec::new(),
            following: Vec::new(),
        }
    }

    #[test]
    fn nodes_are_live_while_heard_and_candidates_only_when_ready() {
        let membership = Membership::new("me", Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!membership.settled(), "the grace starts when it listens");
        membership.listening();
        assert!(
            membership.is_live("unheard"),
            "nobody is dead during the grace"
        );
        membership.heard(beat("a", true, false));
        membership.heard(beat("b", false, false));
        membership.heard(beat("c", true, true));
        assert_eq!(membership.candidates(true, false), vec!["a", "me"]);
        assert_eq!(membership.candidates(false, false), vec!["a"]);
        std::thread::sleep(Duration::from_millis(60));
        assert!(membership.settled());
        assert!(
            !membership.is_live("a"),
            "silent for longer than the timeout"
        );
        assert!(!membership.is_live("unheard"));
        assert!(membership.is_live("me"));
        assert_eq!(membership.candidates(true, false), vec!["me"]);
        membership.heard(beat("a", true, false));
        assert!(membership.is_live("a"));
    }
}
