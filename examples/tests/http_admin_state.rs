//! The admin state surface over real HTTP, on the `bank` binary: an
//! instance's state as JSON, the instances of a type page by page, an
//! instance's pending timers, and a deletion that a SIGKILL right after
//! its answer does not undo.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Bank, Reply, deposit, post};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token";

async fn admin_get(c: &reqwest::Client, bank: &Bank, path: &str) -> Reply {
    Reply::from(
        c.get(bank.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn admin_delete(c: &reqwest::Client, bank: &Bank, path: &str) -> Reply {
    Reply::from(
        c.delete(bank.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Every id of `Account`, fetched `limit` at a time through the cursor.
async fn all_accounts(c: &reqwest::Client, bank: &Bank, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/admin/state/Account?limit={limit}&after={a}"),
            None => format!("/admin/state/Account?limit={limit}"),
        };
        let page = admin_get(c, bank, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let got: Vec<String> = serde_json::from_value(page.json["ids"].clone()).unwrap();
        assert!(got.len() <= limit);
        ids.extend(got);
        match page.json["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn operators_read_list_and_durably_delete_instances() {
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let bank = Bank::start(dir.path(), &["--admin-token", TOKEN]);
    for (id, amount) in [("alice", 100), ("bob", 7), ("carol", 3), ("dave", 1)] {
        deposit(&c, &bank, id, amount).await;
    }
    // A deposit an hour from now: a pending timer of alice.
    let later = post(
        &c,
        &bank.url("/v1/Account/alice/deposit/send?delay=1h"),
        Some(json!({"amount": 5})),
        None,
    )
    .await;
    assert_eq!(later.status, StatusCode::ACCEPTED, "{}", later.text);

    let state = admin_get(&c, &bank, "/admin/state/Account/alice").await;
    assert_eq!(state.status, StatusCode::OK, "{}", state.text);
    assert_eq!(state.json["state"]["balance"], json!(100), "{}", state.text);
    let none = admin_get(&c, &bank, "/admin/state/Account/nobody").await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );

    assert_eq!(
        all_accounts(&c, &bank, 3).await,
        ["alice", "bob", "carol", "dave"]
    );
    assert_eq!(
        all_accounts(&c, &bank, 1).await,
        ["alice", "bob", "carol", "dave"]
    );

    let timers = admin_get(&c, &bank, "/admin/timers/Account/alice").await;
    assert_eq!(timers.status, StatusCode::OK, "{}", timers.text);
    let timers = timers.json["timers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert_eq!(timers[0]["message"], json!({"deposit": {"amount": 5}}));

    // Without the token: refused like every admin route.
    let anonymous = Reply::from(
        c.delete(bank.url("/admin/state/Account/alice"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let deleted = admin_delete(&c, &bank, "/admin/state/Account/alice").await;
    assert_eq!(
        (deleted.status, &deleted.json),
        (StatusCode::OK, &json!({"deleted": true})),
        "{}",
        deleted.text
    );
    // The answer means durable: a SIGKILL right now loses nothing of it.
    tokio::task::spawn_blocking(move || bank.kill())
        .await
        .unwrap();
    let bank = Bank::start(dir.path(), &["--admin-token", TOKEN]);

    let gone = admin_get(&c, &bank, "/admin/state/Account/alice").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text);
    let timers = admin_get(&c, &bank, "/admin/timers/Account/alice").await;
    assert_eq!(
        timers.json["timers"],
        Value::Array(Vec::new()),
        "{}",
        timers.text
    );
    assert_eq!(all_accounts(&c, &bank, 2).await, ["bob", "carol", "dave"]);
    let again = admin_delete(&c, &bank, "/admin/state/Account/alice").await;
    assert_eq!(again.json, json!({"deleted": false}));
    let bob = admin_get(&c, &bank, "/admin/state/Account/bob").await;
    assert_eq!(bob.json["state"]["balance"], json!(7), "{}", bob.text);
}
