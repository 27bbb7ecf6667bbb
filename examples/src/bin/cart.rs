//! The cart example: a checkout by request/reply, and an idle cart expiring.

use std::time::Duration;

use statefn::prelude::*;
use statefn_examples::cart::{Cart, CartStatus, Inventory};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Cart>()
        .register::<Inventory>()
        .open()
        .await?;
    runtime.handle::<Inventory>("apple").restock(10).await?;
    runtime.handle::<Inventory>("pear").restock(1).await?;

    let ann = runtime.handle::<Cart>("ann");
    ann.add("apple".into(), 3).await??;
    ann.add("pear".into(), 1).await??;
    println!("ann checks out {} items", ann.checkout().await??);
    while ann.view().await?.status == CartStatus::CheckingOut {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("ann's cart: {:?}", ann.view().await?);
    println!(
        "apples left: {}",
        runtime.handle::<Inventory>("apple").stock().await?
    );

    let ben = runtime.handle::<Cart>("ben");
    ben.set_idle_timeout(200).await?;
    ben.add("apple".into(), 1).await??;
    println!("ben leaves his cart for 300 ms...");
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("ben's cart: {:?}", ben.view().await?);
    runtime.shutdown().await?;
    Ok(())
}
