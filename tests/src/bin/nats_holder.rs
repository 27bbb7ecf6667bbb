//! Starts a 3-node NATS cluster through the test harness, prints its server
//! PIDs, and holds it: the process that `nats_harness`'s
//! `no_server_survives_a_sigkill_of_its_test_process` SIGKILLs to check that
//! the harness leaves no server behind.

use std::{thread, time::Duration};

use statefn_tests::nats::{NatsCluster, NatsOptions};

fn main() {
    let cluster = NatsCluster::start(NatsOptions::three()).expect("start a NATS cluster");
    let pids: Vec<String> = (0..cluster.len())
        .map(|i| cluster.pid(i).expect("pid").to_string())
        .collect();
    println!("CLUSTER pids={}", pids.join(","));
    thread::sleep(Duration::from_secs(120));
    drop(cluster);
}
