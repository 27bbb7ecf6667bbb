//! Cluster mode, what crosses nodes besides plain messages and egress
//! (issue 12), with runtimes in one test process against a real 3-server
//! NATS JetStream cluster: delayed messages and keyed timers, request/reply
//! (the reply with its correlation, typed failures, timeouts), dead letters
//! and expiry, each across a failover of the group that holds it, delivered
//! or fired exactly once, never early. And a node that takes a group over
//! with a build that can no longer decode a stored timer sets it aside as a
//! dead letter then, as a single node does when it opens.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use statefn::{Builder, RequestFailed, RetryPolicy, prelude::*};

mod cluster_common;
use cluster_common::{Cluster, GROUPS, group_of_instance, retrying, until};

/// Keeps what it is sent; cannot digest "poison" (a panic every attempt).
#[stateful_function(name = "xn.Mailbox")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Mailbox {
    seen: Vec<String>,
}

#[stateful_function]
impl Mailbox {
    #[handler]
    pub fn take(&mut self, text: String) {
        assert!(text != "poison", "cannot digest {text}");
        self.seen.push(text);
    }

    #[handler]
    pub fn seen(&self) -> Vec<String> {
        self.seen.clone()
    }
}

/// Sends to mailboxes now, later, or from a keyed timer of its own.
#[stateful_function(name = "xn.Sender")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sender {}

#[stateful_function]
impl Sender {
    #[handler]
    pub fn send(&mut self, ctx: &mut Context, to: String, texts: Vec<String>) {
        for text in texts {
            ctx.send::<Mailbox>(&to).take(text);
        }
    }

    /// `text` to `to` after `delay_ms` (`send_after`).
    #[handler]
    pub fn later(&mut self, ctx: &mut Context, to: String, text: String, delay_ms: u64) {
        ctx.send_after::<Mailbox>(Duration::from_millis(delay_ms), &to)
            .take(text);
    }

    /// `text` to `to` from this instance's timer `text`, after `delay_ms`.
    #[handler]
    pub fn keyed(&mut self, ctx: &mut Context, to: String, text: String, delay_ms: u64) {
        ctx.timer::<Sender>(&text)
            .after(Duration::from_millis(delay_ms))
            .fire(to, text);
    }

    #[handler(internal)]
    pub fn fire(&mut self, ctx: &mut Context, to: String, text: String) {
        ctx.send::<Mailbox>(&to).take(text);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// Answers `n * 10`, refuses 0, panics on 7.
#[stateful_function(name = "xn.Callee")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Callee {
    calls: u32,
}

#[stateful_function]
impl Callee {
    #[handler]
    pub fn answer(&mut self, n: u32) -> Result<u32, Refused> {
        assert!(n != 7, "the callee cannot answer 7");
        self.calls += 1;
        if n == 0 { Err(Refused) } else { Ok(n * 10) }
    }

    #[handler]
    pub fn calls(&self) -> u32 {
        self.calls
    }
}

/// Asks callees and keeps every outcome it is told, with its tag (the
/// correlation value).
#[stateful_function(name = "xn.Caller")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Caller {
    outcomes: Vec<(String, String)>,
}

#[stateful_function]
impl Caller {
    /// `(callee, n, tag, timeout_ms)`, one request each (0: no timeout).
    #[handler]
    pub fn ask(&mut self, ctx: &mut Context, asks: Vec<(String, u32, String, u64)>) {
        for (to, n, tag, timeout_ms) in asks {
            let request = ctx.request::<Callee>(&to).answer(n);
            let request = match timeout_ms {
                0 => request,
                ms => request.timeout(Duration::from_millis(ms)),
            };
            request.reply_to_with(CallerMessage::answered(), tag);
        }
    }

    #[handler(internal)]
    pub fn answered(&mut self, tag: String, reply: Result<u32, RequestFailed<Refused>>) {
        let outcome = match reply {
            Ok(v) => format!("ok {v}"),
            Err(RequestFailed::Rejected(Refused)) => "rejected".to_owned(),
            Err(RequestFailed::Timeout) => "timeout".to_owned(),
            Err(RequestFailed::CalleeFailed { error }) => format!("failed: {error}"),
        };
        self.outcomes.push((tag, outcome));
    }

    #[handler]
    pub fn outcomes(&self) -> Vec<(String, String)> {
        self.outcomes.clone()
    }
}

/// Removed after 4 s without a change.
#[stateful_function(name = "xn.Session", expire_after = "4s")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Session {
    touches: u32,
}

#[stateful_function]
impl Session {
    #[handler]
    pub fn touch(&mut self) -> u32 {
        self.touches += 1;
        self.touches
    }

    #[handler]
    pub fn touches(&self) -> u32 {
        self.touches
    }
}

const SESSION_TTL: Duration = Duration::from_secs(4);

fn functions(builder: Builder) -> Builder {
    builder
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        })
        .register::<Mailbox>()
        .register::<Sender>()
        .register::<Callee>()
        .register::<Caller>()
        .register::<Session>()
}

/// A reminder as the first build has it: `remind` sets its timer
/// `reminder` to run `ring` later.
mod first {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};
    use statefn::prelude::*;

    #[stateful_function(name = "xv.Reminder")]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Reminder {
        rung: Vec<String>,
    }

    #[stateful_function]
    impl Reminder {
        #[handler]
        pub(crate) fn remind(&mut self, ctx: &mut Context, after_ms: u64, label: String) {
            ctx.timer::<Reminder>("reminder")
                .after(Duration::from_millis(after_ms))
                .ring(label);
        }

        #[handler]
        pub(crate) fn ring(&mut self, label: String) {
            self.rung.push(label);
        }
    }
}

/// The next build: `ring` was removed (without a `renamed_from` on another
/// handler), so a stored `ring` no longer decodes.
mod next {
    use serde::{Deserialize, Serialize};
    use statefn::prelude::*;

    #[stateful_function(name = "xv.Reminder")]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Reminder {
        rung: Vec<String>,
    }

    #[stateful_function]
    impl Reminder {
        #[handler]
        pub(crate) fn chime(&mut self, label: String) {
            self.rung.push(label);
        }
    }
}

fn first_build(builder: Builder) -> Builder {
    functions(builder).register::<first::Reminder>()
}

fn next_build(builder: Builder) -> Builder {
    functions(builder).register::<next::Reminder>()
}

/// An id of `function` whose log group `owner` serves (`on`) or does not
/// serve (`!on`), not in `taken`.
fn id_where(
    function: &str,
    owners: &BTreeMap<u16, String>,
    owner: &str,
    on: bool,
    taken: &mut Vec<String>,
) -> String {
    let id = (0..10_000)
        .map(|i| format!("{}-{i}", function.trim_start_matches("xn.").to_lowercase()))
        .find(|id| (owners[&group_of_instance(function, id)] == owner) == on && !taken.contains(id))
        .expect("an id");
    taken.push(id.clone());
    id
}

/// Waits a few re-send periods (300 ms each), so that a duplicate would
/// have arrived by then.
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_and_keyed_timers_cross_nodes_once_across_a_failover_of_either_side() {
    let mut cluster = Cluster::start_shared(3, "xdelay", functions).await;
    let owners = cluster.settled().await;
    let victim = owners[&0].clone();
    let survivor = owners
        .values()
        .find(|o| **o != victim)
        .expect("groups spread")
        .clone();
    let client = Cluster::index_of(&survivor);
    let mut taken = Vec::new();
    // Pair 0: the sender's group fails over while its timers are pending
    // (the new owner arms them again); pair 1: the receiver's group does
    // (the message is re-sent to the new owner).
    let pairs = [
        (
            id_where("xn.Sender", &owners, &victim, true, &mut taken),
            id_where("xn.Mailbox", &owners, &victim, false, &mut taken),
        ),
        (
            id_where("xn.Sender", &owners, &victim, false, &mut taken),
            id_where("xn.Mailbox", &owners, &victim, true, &mut taken),
        ),
    ];
    let delay = Duration::from_millis(2000);
    let set_at = Instant::now();
    for (i, (sender, mailbox)) in pairs.iter().enumerate() {
        let node = cluster.node(client);
        for kind in ["after", "keyed"] {
            let text = format!("{kind}-{i}");
            let ms = delay.as_millis() as u64;
            retrying(&text, || async {
                let sender = node.handle::<Sender>(sender);
                let call = match kind {
                    "after" => sender.later(mailbox.clone(), text.clone(), ms),
                    _ => sender.keyed(mailbox.clone(), text.clone(), ms),
                };
                call.idempotency_key(text.clone()).await
            })
            .await;
        }
    }
    cluster.stop(Cluster::index_of(&victim));

    // Not early: a look that came back before the timers were due saw
    // nothing (each timer's due time is after `set_at + delay`).
    for (_, mailbox) in &pairs {
        let node = cluster.node(client);
        let seen = retrying("seen", || async {
            node.handle::<Mailbox>(mailbox).seen().await
        })
        .await;
        if set_at.elapsed() < delay {
            assert!(seen.is_empty(), "delivered before due: {seen:?}");
        }
    }
    // Delivered after the failover, each once.
    for (i, (_, mailbox)) in pairs.iter().enumerate() {
        let node = cluster.node(client);
        until(&format!("pair {i}'s delayed messages"), || async {
            let seen = node.handle::<Mailbox>(mailbox).seen().await.ok()?;
            (seen.len() >= 2).then_some(())
        })
        .await;
    }
    quiet().await;
    for (i, (_, mailbox)) in pairs.iter().enumerate() {
        for reader in cluster.running() {
            let mut seen = retrying("seen", || async {
                reader.handle::<Mailbox>(mailbox).seen().await
            })
            .await;
            seen.sort();
            assert_eq!(
                seen,
                [format!("after-{i}"), format!("keyed-{i}")],
                "pair {i}: each delayed message once"
            );
        }
    }
    cluster.shutdown().await;
}

/// `(tag, outcome)` pairs in tag order.
fn sorted(mut outcomes: Vec<(String, String)>) -> Vec<(String, String)> {
    outcomes.sort();
    outcomes
}

/// `caller` asks `callee` each `(n, tag, timeout_ms)`, in one invocation.
async fn ask(node: &Runtime, caller: &str, callee: &str, asks: &[(u32, &str, u64)], key: &str) {
    let asks: Vec<(String, u32, String, u64)> = asks
        .iter()
        .map(|&(n, tag, timeout)| (callee.to_owned(), n, tag.to_owned(), timeout))
        .collect();
    retrying("ask", || async {
        node.handle::<Caller>(caller)
            .ask(asks.clone())
            .idempotency_key(key)
            .await
    })
    .await;
}

/// `caller`'s outcomes, once it has at least `count`.
async fn outcomes(node: &Runtime, caller: &str, count: usize) -> Vec<(String, String)> {
    until(&format!("{count} outcomes"), || async {
        let outcomes = node.handle::<Caller>(caller).outcomes().await.ok()?;
        (outcomes.len() >= count).then_some(outcomes)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_across_nodes_get_their_reply_typed_failures_and_a_timeout_once() {
    let mut cluster = Cluster::start_shared(3, "xrequest", functions).await;
    let owners = cluster.settled().await;
    let callee_node = owners[&0].clone();
    let mut taken = Vec::new();
    let callee = id_where("xn.Callee", &owners, &callee_node, true, &mut taken);
    let caller = id_where("xn.Caller", &owners, &callee_node, false, &mut taken);
    let client = Cluster::index_of(&owners[&group_of_instance("xn.Caller", &caller)]);
    // The reply, the callee's `Err` and its panic each come back to the
    // caller's node with their correlation, typed.
    let node = cluster.node(client);
    let asks = vec![(3, "three", 0), (0, "zero", 0), (7, "seven", 0)];
    ask(node, &caller, &callee, &asks, "a").await;
    let got = sorted(outcomes(node, &caller, 3).await);
    assert_eq!(got[1], ("three".to_owned(), "ok 30".to_owned()));
    assert_eq!(got[2], ("zero".to_owned(), "rejected".to_owned()));
    assert_eq!(got[0].0, "seven");
    assert!(
        got[0].1.starts_with("failed: ") && got[0].1.contains("cannot answer 7"),
        "{got:?}"
    );
    // The request that failed is a dead letter at the callee's node.
    let letters = cluster
        .node(Cluster::index_of(&callee_node))
        .dead_letters()
        .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].target.to_string(), format!("xn.Callee/{callee}"));

    // The callee's node is gone for longer than the request's timeout: the
    // timeout answers (failure detection alone takes 600 ms), once; the
    // request still reaches the callee's new owner, whose late reply is
    // dropped.
    // (An `Err` reply changes nothing: one call counted so far.)
    let node = cluster.node(client);
    let calls_before = retrying("calls", || async {
        node.handle::<Callee>(&callee).calls().await
    })
    .await;
    assert_eq!(calls_before, 1);
    cluster.stop(Cluster::index_of(&callee_node));
    let node = cluster.node(client);
    ask(node, &caller, &callee, &[(4, "late", 100)], "b").await;
    let got = outcomes(node, &caller, 4).await;
    assert_eq!(got[3], ("late".to_owned(), "timeout".to_owned()), "{got:?}");
    let started = Instant::now();
    loop {
        let calls = retrying("calls", || async {
            node.handle::<Callee>(&callee).calls().await
        })
        .await;
        if calls == calls_before + 1 {
            break;
        }
        assert!(
            started.elapsed() < cluster_common::PATIENCE,
            "the late request was never applied by the callee's new owner: {calls} calls"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    quiet().await;
    assert_eq!(
        sorted(outcomes(node, &caller, 4).await),
        sorted(got),
        "the late reply is dropped, nothing arrives twice"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_a_caller_whose_group_fails_over_arrive_once() {
    let mut cluster = Cluster::start_shared(3, "xreply", functions).await;
    let owners = cluster.settled().await;
    let victim = owners[&0].clone();
    let survivor = owners.values().find(|o| **o != victim).expect("spread");
    let client = Cluster::index_of(survivor);
    let mut taken = Vec::new();
    let caller = id_where("xn.Caller", &owners, &victim, true, &mut taken);
    let callees: Vec<String> = (0..4)
        .map(|_| id_where("xn.Callee", &owners, &victim, false, &mut taken))
        .collect();
    let asks: Vec<(String, u32, String, u64)> = (0..12u32)
        .map(|i| {
            let callee = callees[i as usize % callees.len()].clone();
            (callee, i + 10, format!("t{i:02}"), 0)
        })
        .collect();
    let node = cluster.node(client);
    retrying("ask", || async {
        node.handle::<Caller>(&caller)
            .ask(asks.clone())
            .idempotency_key("asks")
            .await
    })
    .await;
    // The caller's node stops as the replies come back: the new owner of
    // its group gets each reply (re-sent by the callees' owners), once.
    cluster.stop(Cluster::index_of(&victim));
    let node = cluster.node(client);
    until("every reply", || async {
        let outcomes = node.handle::<Caller>(&caller).outcomes().await.ok()?;
        (outcomes.len() >= asks.len()).then_some(())
    })
    .await;
    quiet().await;
    let outcomes = retrying("outcomes", || async {
        node.handle::<Caller>(&caller).outcomes().await
    })
    .await;
    let expected: Vec<(String, String)> = asks
        .iter()
        .map(|(_, n, tag, _)| (tag.clone(), format!("ok {}", n * 10)))
        .collect();
    assert_eq!(sorted(outcomes), expected, "each reply once");
    // Each request was applied once at its callee.
    for (c, callee) in callees.iter().enumerate() {
        let asked = asks.iter().filter(|(to, ..)| to == callee).count();
        let calls = retrying("calls", || async {
            node.handle::<Callee>(callee).calls().await
        })
        .await;
        assert_eq!(calls as usize, asked, "callee {c}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_on_another_node_is_its_dead_letter_once_and_stays_across_a_failover() {
    let mut cluster = Cluster::start_shared(3, "xdead", functions).await;
    let owners = cluster.settled().await;
    let receiver_node = owners[&0].clone();
    let mut taken = Vec::new();
    let mailbox = id_where("xn.Mailbox", &owners, &receiver_node, true, &mut taken);
    let sender = id_where("xn.Sender", &owners, &receiver_node, false, &mut taken);
    let sender_node = owners[&group_of_instance("xn.Sender", &sender)].clone();
    let client = Cluster::index_of(&sender_node);
    let node = cluster.node(client);
    let texts: Vec<String> = ["a", "poison", "b"].map(String::from).to_vec();
    retrying("send", || async {
        node.handle::<Sender>(&sender)
            .send(mailbox.clone(), texts.clone())
            .idempotency_key("send")
            .await
    })
    .await;

    // Dead-lettered at the receiver's node, there only; the messages after
    // it go on.
    let receiver = cluster.node(Cluster::index_of(&receiver_node));
    let letters = until("the dead letter", || async {
        let letters = receiver.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let seen = retrying("seen", || async {
        node.handle::<Mailbox>(&mailbox).seen().await
    })
    .await;
    assert_eq!(seen, ["a", "b"]);
    quiet().await;
    let letters_then = receiver.dead_letters().await;
    assert_eq!(letters_then, letters, "once");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.target.to_string(), format!("xn.Mailbox/{mailbox}"));
    assert_eq!(
        letter.message,
        serde_json::json!({"take": {"text": "poison"}})
    );
    assert!(letter.error.contains("cannot digest poison"), "{letter:?}");
    assert_eq!(letter.attempts, 3);
    for (i, other) in cluster.nodes.iter().enumerate() {
        if i != Cluster::index_of(&receiver_node) {
            let other = other.as_ref().expect("running");
            assert!(other.dead_letters().await.is_empty(), "n{i}");
        }
    }

    // The receiver's node stops: the new owner of its group lists the same
    // dead letter, once, and nowhere else; the sender's re-sends add none.
    cluster.stop(Cluster::index_of(&receiver_node));
    let owners = cluster.settled().await;
    let group = group_of_instance("xn.Mailbox", &mailbox);
    let new_owner = cluster.node(Cluster::index_of(&owners[&group]));
    let node = cluster.node(client);
    quiet().await;
    assert_eq!(new_owner.dead_letters().await, letters);
    for other in cluster.running() {
        if !std::ptr::eq(other, new_owner) {
            assert!(other.dead_letters().await.is_empty());
        }
    }
    let seen = retrying("seen", || async {
        node.handle::<Mailbox>(&mailbox).seen().await
    })
    .await;
    assert_eq!(seen, ["a", "b"], "nothing applied twice");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_expires_once_across_a_failover_and_a_handoff_not_early_and_not_never() {
    let mut cluster = Cluster::start_shared(3, "xexpiry", functions).await;
    let owners = cluster.settled().await;
    let failing = owners[&0].clone();
    let leaving = owners
        .values()
        .find(|o| **o != failing)
        .expect("spread")
        .clone();
    let staying = (0..3)
        .map(|i| format!("n{i}"))
        .find(|n| *n != failing && *n != leaving)
        .expect("a third node");
    let client = Cluster::index_of(&staying);
    let mut taken = Vec::new();
    let sessions = [
        id_where("xn.Session", &owners, &failing, true, &mut taken),
        id_where("xn.Session", &owners, &leaving, true, &mut taken),
    ];
    let touched = Instant::now();
    for (i, session) in sessions.iter().enumerate() {
        let node = cluster.node(client);
        let touches = retrying("touch", || async {
            node.handle::<Session>(session)
                .touch()
                .idempotency_key(format!("touch-{i}"))
                .await
        })
        .await;
        assert_eq!(touches, 1);
    }
    // One session's group fails over, the other's is handed off.
    cluster.stop(Cluster::index_of(&failing));
    let leaving = cluster.nodes[Cluster::index_of(&leaving)]
        .take()
        .expect("running");
    leaving.shutdown().await.expect("shutdown");

    // Not early: a look that came back before the time to live was over
    // (counted from before the touch) saw the instance.
    let node = cluster.node(client);
    for session in &sessions {
        let touches = retrying("touches", || async {
            node.handle::<Session>(session).touches().await
        })
        .await;
        if touched.elapsed() < SESSION_TTL {
            assert_eq!(touches, 1, "{session} expired early");
        }
    }
    // Not never: the new owners expire them.
    for session in &sessions {
        until(&format!("{session} expires"), || async {
            (node.handle::<Session>(session).touches().await.ok()? == 0).then_some(())
        })
        .await;
    }
    assert!(touched.elapsed() >= SESSION_TTL);
    // Once: a session touched again is a new instance that lives its own
    // time to live (nothing left of the old expiry removes it).
    for session in &sessions {
        let touches = retrying("touch again", || async {
            node.handle::<Session>(session).touch().await
        })
        .await;
        assert_eq!(touches, 1);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_taking_groups_over_dead_letters_stored_timers_its_build_cannot_decode() {
    let mut cluster = Cluster::start_shared(1, "xupgrade", first_build).await;
    cluster.settled().await;
    // A reminder an hour away in every log group, set by the first build.
    let reminders: Vec<String> = (0..GROUPS)
        .map(|g| {
            (0..)
                .map(|i| format!("r-{i}"))
                .find(|id| group_of_instance("xv.Reminder", id) == g)
                .expect("an id")
        })
        .collect();
    for reminder in &reminders {
        let node = cluster.node(0);
        retrying("remind", || async {
            node.handle::<first::Reminder>(reminder)
                .remind(3_600_000, "hourly".to_owned())
                .idempotency_key(reminder.clone())
                .await
        })
        .await;
    }
    assert!(cluster.node(0).dead_letters().await.is_empty());

    // A node with the next build joins and is handed groups: their stored
    // `ring` timers become dead letters as it takes them, an hour before
    // they are due (the first build, which decodes them, keeps its own as
    // timers).
    let joined = cluster.add_with(next_build).await;
    let owners = cluster.settled().await;
    let check = |letters: Vec<statefn::DeadLetter>, groups: Vec<u16>| {
        let mut targets: Vec<String> = letters.iter().map(|l| l.target.id().to_owned()).collect();
        targets.sort();
        let mut expected: Vec<String> = groups
            .iter()
            .map(|&g| reminders[usize::from(g)].clone())
            .collect();
        expected.sort();
        assert_eq!(targets, expected, "{letters:#?}");
        for letter in &letters {
            assert!(
                letter.error.contains("`ring`"),
                "the reason names the handler: {}",
                letter.error
            );
        }
    };
    let handed: Vec<u16> = (0..GROUPS)
        .filter(|g| owners[g] == format!("n{joined}"))
        .collect();
    assert!(!handed.is_empty(), "{owners:?}");
    let node = cluster.node(joined);
    let letters = until("dead letters of the handed groups", || async {
        let letters = node.dead_letters().await;
        (letters.len() >= handed.len()).then_some(letters)
    })
    .await;
    check(letters, handed);
    assert!(cluster.node(0).dead_letters().await.is_empty());

    // The first node stops: the joined one, its standby, takes the other
    // groups over, and their timers become dead letters too. The dead
    // letters are in the groups' logs: the ones it made before are still
    // listed once.
    cluster.stop(0);
    cluster.settled().await;
    let node = cluster.node(joined);
    until("dead letters of every group", || async {
        (node.dead_letters().await.len() >= usize::from(GROUPS)).then_some(())
    })
    .await;
    quiet().await;
    check(node.dead_letters().await, (0..GROUPS).collect());
    cluster.shutdown().await;
}
