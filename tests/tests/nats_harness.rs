//! The NATS test harness itself: it installs the pinned server, starts
//! clusters, signals servers, and leaves no server behind, even when the
//! process that started them is SIGKILLed.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use statefn_tests::nats::{
    NATS_SERVER_VERSION, NatsCluster, NatsOptions, SyncInterval, process_alive, server_binary,
};

#[test]
fn the_pinned_server_is_installed() {
    let binary = server_binary().expect("install nats-server");
    let out = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("run it");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("nats-server: v{NATS_SERVER_VERSION}")
    );
}

#[test]
fn a_single_server_with_fsync_always_starts_and_stops() {
    let cluster =
        NatsCluster::start(NatsOptions::single().sync(SyncInterval::Always)).expect("start");
    let (status, body) = cluster.monitor_get(0, "/jsz").expect("jsz");
    assert_eq!(status, 200);
    let jsz: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(jsz["config"]["sync_always"], true, "{body}");
    let pid = cluster.pid(0).expect("pid");
    let port = client_port(&cluster.client_url(0));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(cluster);
    assert!(!process_alive(pid), "drop must kill the server");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens after drop"
    );
}

#[test]
fn three_servers_elect_a_leader_survive_kill_restart_and_pause() {
    let mut cluster = NatsCluster::start(NatsOptions::three()).expect("start");
    assert_eq!(cluster.len(), 3);
    let (_, body) = cluster.monitor_get(0, "/jsz").expect("jsz");
    let jsz: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        jsz["meta_cluster"]["leader"]
            .as_str()
            .is_some_and(|l| cluster.index_of(l).is_some()),
        "{body}"
    );
    // The default: fsync every 2 minutes, not on every write.
    assert_ne!(jsz["config"]["sync_always"], true, "{body}");

    let old_pid = cluster.pid(2).expect("pid");
    cluster.kill(2).expect("kill");
    assert!(!cluster.is_running(2));
    cluster
        .restart(2)
        .expect("restart on the same ports and store");
    assert!(cluster.is_running(2));
    assert_ne!(cluster.pid(2), Some(old_pid));

    cluster.pause(1).expect("pause");
    let mut probe = TcpStream::connect(("127.0.0.1", client_port(&cluster.client_url(1))))
        .expect("the socket stays open");
    probe
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut line = String::new();
    assert!(
        BufReader::new(&mut probe).read_line(&mut line).is_err(),
        "a paused server says nothing, got {line:?}"
    );
    cluster.resume(1).expect("resume");
    cluster
        .wait_ready(Duration::from_secs(30))
        .expect("ready after resume");
    let mut probe =
        TcpStream::connect(("127.0.0.1", client_port(&cluster.client_url(1)))).expect("connect");
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut line = String::new();
    BufReader::new(&mut probe)
        .read_line(&mut line)
        .expect("INFO line");
    assert!(line.starts_with("INFO "), "{line}");
}

#[test]
fn no_server_survives_a_sigkill_of_its_test_process() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nats-holder"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the process that holds a cluster");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map(|l| l.expect("read"))
        .find_map(|l| l.split_once("CLUSTER ").map(|(_, rest)| rest.to_owned()))
        .expect("the child started a cluster");
    let field = |name: &str| -> Vec<i64> {
        let value = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .expect("field");
        value
            .split(',')
            .map(|v| v.parse().expect("number"))
            .collect()
    };
    let pids = field("pids");
    assert_eq!(pids.len(), 3);
    for &pid in &pids {
        assert!(
            process_alive(pid as i32),
            "server {pid} runs while the child lives"
        );
    }

    child.kill().expect("SIGKILL the child test process");
    child.wait().expect("reap it");

    let deadline = Instant::now() + Duration::from_secs(10);
    let survivors = || {
        pids.iter()
            .filter(|&&pid| process_alive(pid as i32))
            .count()
    };
    while survivors() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        survivors(),
        0,
        "servers {pids:?} outlived their test process"
    );
    // The servers' ports are not checked: another test in this binary may
    // take a freed port at once, so a served port proves nothing.
}

fn client_port(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("nats://host:port")
}
