//! A failed checkpoint gives back what it took: states, stored replies and
//! the removal lists, so a later checkpoint neither loses nor resurrects.

use super::*;

#[test]
fn a_failed_checkpoint_gives_back_its_states_and_stored_replies() {
    let registry = registry();
    let (mut core, _dir) = durable_core();
    let id = local(0);
    let deposit = |n: i64| message(&registry, "deposit", serde_json::json!({"amount": n}));
    run(
        &mut core,
        &registry,
        vec![client(&id, deposit(4), Some("k"))],
    );
    let acked = |_: ShardId| Seq(0);
    let failed = core.freeze(&acked, EgressSeq(0), NOW_MS);
    assert_eq!((failed.states.len(), failed.idempotency.len()), (1, 1));
    assert!(core.checkpoint.in_flight);
    drop(failed);
    core.checkpoint_finished(Epoch(1), None);
    assert!(!core.checkpoint.in_flight && core.checkpoint.requested);
    // The next checkpoint carries them again: they were not lost with the
    // failed one, and they are still read.
    assert_eq!(balance(&mut core, &id), Some(4));
    let again = core.freeze(&acked, EgressSeq(0), NOW_MS);
    assert_eq!((again.states.len(), again.idempotency.len()), (1, 1));
    drop(again);
    core.checkpoint_finished(Epoch(1), Some(Lsn(9)));
    assert_eq!(core.checkpoint.lsn, Lsn(9));
    // A result for a core of another epoch is ignored.
    core.checkpoint.in_flight = true;
    core.checkpoint_finished(Epoch(2), Some(Lsn(20)));
    assert_eq!(core.checkpoint.lsn, Lsn(9));
}

#[test]
fn a_failed_checkpoint_gives_back_its_removal_lists() {
    let registry = registry();
    let (mut core, _dir) = durable_core();
    let (a, c) = (local(0), local(1));
    // A send (outbox), a timer and an egress record...
    run(
        &mut core,
        &registry,
        vec![client(
            &a,
            message(
                &registry,
                "transfer",
                serde_json::json!({"to": c, "amount": 5}),
            ),
            None,
        )],
    );
    // ...the timer fires, a message becomes a dead letter and is dropped.
    let timer = *timer_slots(&core).first().expect("a timer");
    run(&mut core, &registry, vec![Mail::TimerDue { timer }]);
    run(
        &mut core,
        &registry,
        vec![from_function(
            &c,
            message(&registry, "boom", serde_json::json!({})),
            3,
            1,
        )],
    );
    let letter = core
        .dead_letters
        .entries()
        .next()
        .map(|l| l.id)
        .expect("a dead letter");
    let (reply, _rx) = oneshot::channel();
    run(
        &mut core,
        &registry,
        vec![Mail::DeadLetter {
            id: letter,
            replay: false,
            reply,
        }],
    );
    // Everything sent is acknowledged, every egress record appended.
    let acked = |_: ShardId| Seq(u64::MAX);
    let removals = |job: &crate::shard::freeze::CheckpointJob| {
        (
            job.timers
                .timers
                .iter()
                .filter(|(_, timer)| timer.is_none())
                .map(|(slot, _)| *slot)
                .collect::<Vec<_>>(),
            job.outbox_removed.len(),
            job.egress_removed.clone(),
            job.dead_letters_removed.clone(),
        )
    };
    let failed = core.freeze(&acked, EgressSeq(u64::MAX), NOW_MS);
    let expected = removals(&failed);
    assert_eq!(expected.0, vec![timer]);
    assert_eq!(expected.1, 2, "the deposit and the timer's message");
    assert_eq!(expected.2.len(), 1);
    assert_eq!(expected.3, vec![letter]);
    drop(failed);
    core.checkpoint_finished(Epoch(1), None);
    // The next checkpoint deletes them: otherwise the store would keep the
    // fired timer and the dropped letter past a checkpoint that covers
    // their removal, and bring them back at the next recovery.
    let again = core.freeze(&acked, EgressSeq(u64::MAX), NOW_MS);
    assert_eq!(removals(&again), expected);
    drop(again);
    core.checkpoint_finished(Epoch(1), Some(Lsn(9)));
    let after = core.freeze(&acked, EgressSeq(u64::MAX), NOW_MS);
    assert_eq!(
        removals(&after),
        (vec![], 0, vec![], vec![]),
        "written once"
    );
}
