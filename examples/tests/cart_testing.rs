//! The cart example tested with `statefn::testing` (the README shows this
//! test; `readme_shows_this_test` keeps the two the same).

// README: begin
use std::time::Duration;

use statefn::testing::TestRuntime;
use statefn_examples::cart::{Cart, CartStatus, Inventory};

#[test]
fn a_checkout_survives_a_crash_and_the_idle_timer_fires_on_virtual_time()
-> Result<(), Box<dyn std::error::Error>> {
    let mut rt = TestRuntime::builder()
        .seed(1) //                                      same seed, same run
        .register::<Cart>()
        .register::<Inventory>()
        .start()?; //                                    data in a temp dir, clock at 2026-01-01

    rt.call(rt.handle::<Inventory>("apple").restock(5))?;
    let cart = rt.handle::<Cart>("c-1");
    rt.call(cart.add("apple".into(), 2))??; //           a handler's own Err is the inner Result

    // `add` set the cart's keyed idle timer (a later `add` replaces it).
    let timer = rt.sent().last().expect("sent");
    assert_eq!(
        (timer.handler(), timer.delay),
        ("expire_idle", Duration::from_secs(15 * 60))
    );

    rt.advance(Duration::from_secs(14 * 60)); //         virtual time: takes no time
    rt.crash()?; //                                      as kill -9, then recovery
    let cart = rt.handle::<Cart>("c-1"); //              handles belong to one incarnation
    assert_eq!(rt.call(cart.checkout())??, 1); //        request/reply with Inventory ran too
    let ordered = rt.state::<Cart>("c-1")?.expect("stored");
    assert_eq!(ordered.view().status, CartStatus::Ordered); // handlers are plain methods
    assert_eq!(rt.state::<Inventory>("apple")?.expect("stored").stock(), 3);

    rt.advance(Duration::from_secs(60)); //              the idle timer fires, once
    assert_eq!(
        rt.state::<Cart>("c-1")?.expect("stored").view().status,
        CartStatus::Ordered
    );
    let expired = rt.handle::<Cart>("c-2");
    rt.call(expired.add("pear".into(), 1))??;
    rt.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        rt.state::<Cart>("c-2")?.expect("stored").view().status,
        CartStatus::Expired
    );
    Ok(())
}
// README: end

#[test]
fn readme_shows_this_test() {
    let readme = include_str!("../../README.md");
    let this = include_str!("cart_testing.rs");
    let section = |text: &'static str, begin: &str, end: &str| -> String {
        let start = text.find(begin).expect("begin marker") + begin.len();
        let stop = start + text[start..].find(end).expect("end marker");
        text[start..stop].trim().to_owned()
    };
    let shown = section(readme, "<!-- cart_testing.rs -->\n```rust", "```");
    let tested = section(
        this,
        &["// README:", " begin"].concat(),
        &["// README:", " end"].concat(),
    );
    assert_eq!(
        shown, tested,
        "update README.md's test kit example from examples/tests/cart_testing.rs"
    );
}
