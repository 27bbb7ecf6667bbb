//! A function asks another and gets the typed reply as a later message to one
//! of its own handlers; `Err` replies arrive too.

use statefn::prelude::*;
use statefn_examples::cart::{Cart, CartStatus, Inventory};
use statefn_tests::eventually;

async fn shop() -> Result<Runtime, Error> {
    Runtime::builder()
        .in_memory()
        .register::<Cart>()
        .register::<Inventory>()
        .open()
        .await
}

#[tokio::test]
async fn checkout_reserves_every_item_through_request_reply() -> Result<(), Error> {
    let runtime = shop().await?;
    runtime.handle::<Inventory>("apple").restock(5).await?;
    runtime.handle::<Inventory>("pear").restock(5).await?;
    let cart = runtime.handle::<Cart>("c1");
    cart.add("apple".into(), 2).await?.expect("open");
    cart.add("pear".into(), 3).await?.expect("open");
    assert_eq!(cart.checkout().await?, Ok(2));
    let view = eventually(10, || async {
        let v = cart.view().await.ok()?;
        (v.status != CartStatus::CheckingOut).then_some(v)
    })
    .await;
    assert_eq!(view.status, CartStatus::Ordered);
    assert_eq!(runtime.handle::<Inventory>("apple").stock().await?, 3);
    assert_eq!(runtime.handle::<Inventory>("pear").stock().await?, 2);
    runtime.shutdown().await
}

#[tokio::test]
async fn an_err_reply_reaches_the_requester_and_changes_nothing_at_the_callee() -> Result<(), Error>
{
    let runtime = shop().await?;
    runtime.handle::<Inventory>("plum").restock(1).await?;
    let cart = runtime.handle::<Cart>("c2");
    cart.add("plum".into(), 4).await?.expect("open");
    cart.checkout().await?.expect("checking out");
    let view = eventually(10, || async {
        let v = cart.view().await.ok()?;
        (v.status != CartStatus::CheckingOut).then_some(v)
    })
    .await;
    assert_eq!(view.status, CartStatus::Failed);
    assert_eq!(
        view.unavailable,
        vec!["plum: only 1 left, 4 asked".to_owned()]
    );
    assert_eq!(runtime.handle::<Inventory>("plum").stock().await?, 1);
    runtime.shutdown().await
}
