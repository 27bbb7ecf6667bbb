//! The cart's reply and timer handlers (`reserved`, `expire_idle`) are
//! `#[handler(internal)]`: over HTTP they answer exactly as a handler that
//! does not exist, so nobody outside can forge an inventory's reply or
//! expire someone's cart; `/admin/functions` still lists them, as internal.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Reply, post};
use reqwest::StatusCode;
use serde_json::{Value, json};
use statefn::{
    ingress::{self, IngressConfig},
    prelude::*,
};
use statefn_examples::cart::{Cart, CartStatus, Inventory};

const ADMIN_TOKEN: &str = "s3cret";

/// Serves the cart example on 127.0.0.1:0, with the admin surface if
/// `admin`; returns the runtime and base URL.
async fn serve_carts(admin: bool) -> (Runtime, String) {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Cart>()
        .register::<Inventory>()
        .open()
        .await
        .unwrap();
    let config = IngressConfig {
        admin_token: admin.then(|| ADMIN_TOKEN.into()),
        ..IngressConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = ingress::router(runtime.clone(), config);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (runtime, base)
}

/// The reply with every mention of `handler` replaced by `HANDLER`.
fn masked(reply: &Reply, handler: &str) -> (StatusCode, Value) {
    let text = reply.text.replace(handler, "HANDLER");
    (reply.status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn an_internal_handler_answers_http_exactly_like_an_unknown_one() {
    let (runtime, base) = serve_carts(false).await;
    let c = reqwest::Client::new();
    // Public handlers' paths come from their typed routes; an internal
    // handler's route has no path (that does not compile), so the forged
    // calls below spell theirs out.
    let cart = statefn::routes::<Cart>("c-1");
    let added = post(
        &c,
        &format!("{base}{}", cart.add().path()),
        Some(json!({"sku": "apple", "units": 2})),
        None,
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{added:?}");

    let forged = [
        ("expire_idle", json!({})),
        ("reserved", json!({"sku": "apple", "reply": {"Ok": 3}})),
    ];
    for (handler, args) in forged {
        for suffix in ["", "/send"] {
            let internal = post(
                &c,
                &format!("{base}/v1/shop.Cart/c-1/{handler}{suffix}"),
                Some(args.clone()),
                None,
            )
            .await;
            let unknown = post(
                &c,
                &format!("{base}/v1/shop.Cart/c-1/no_such_handler{suffix}"),
                Some(args.clone()),
                None,
            )
            .await;
            assert_eq!(internal.status, StatusCode::NOT_FOUND, "{internal:?}");
            assert_eq!(internal.code(), "unknown_handler");
            assert_eq!(
                masked(&internal, handler),
                masked(&unknown, "no_such_handler"),
                "{handler}{suffix}"
            );
            // Whatever the 404 lists, it gives away no internal handler.
            for other in ["expire_idle", "reserved"]
                .iter()
                .filter(|h| **h != handler)
            {
                assert!(!internal.text.contains(other), "{internal:?}");
                assert!(!unknown.text.contains(other), "{unknown:?}");
            }
        }
    }

    // Nothing forged reached the cart: it is still open with its items.
    let view = post(&c, &format!("{base}{}", cart.view().path()), None, None).await;
    assert_eq!(view.status, StatusCode::OK, "{view:?}");
    assert_eq!(view.json["status"], json!("Open"));
    assert_eq!(view.json["items"], json!({"apple": 2}));
    let typed = runtime.handle::<Cart>("c-1").view().await.unwrap();
    assert_eq!(typed.status, CartStatus::Open);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_functions_lists_internal_handlers_as_internal() {
    let (runtime, base) = serve_carts(true).await;
    let c = reqwest::Client::new();
    let reply = Reply::from(
        c.get(format!("{base}/admin/functions"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let cart = reply.json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "shop.Cart")
        .unwrap()
        .clone();
    let internal: Vec<(String, bool)> = cart["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["internal"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("set_idle_timeout", false),
        ("add", false),
        ("expire_idle", true),
        ("checkout", false),
        ("reserved", true),
        ("view", false),
    ];
    assert_eq!(
        internal,
        expected
            .iter()
            .map(|(n, i)| ((*n).to_owned(), *i))
            .collect::<Vec<_>>()
    );
    runtime.shutdown().await.unwrap();
}
