//! The bank example: open accounts, move money, read balances.

use statefn::prelude::*;
use statefn_examples::bank::Account;

#[tokio::main]
async fn main() -> Result<(), statefn::Error> {
    // Durable by default: state and replies survive crashes and restarts.
    let runtime = Runtime::builder()
        .data_dir("./data")
        .register::<Account>()
        .open()
        .await?;
    let alice = runtime.handle::<Account>("alice");
    let bob = runtime.handle::<Account>("bob");

    println!(
        "alice deposits 100 -> balance {}",
        alice.deposit(100).await?
    );
    // A retried request with the same idempotency key is applied once.
    for _ in 0..2 {
        let balance = bob.deposit(10).idempotency_key("order-991").await?;
        println!("bob deposits 10 (key order-991) -> balance {balance}");
    }
    match alice.transfer("bob".into(), 30).await? {
        Ok(left) => println!("alice transfers 30 to bob -> alice has {left}"),
        Err(refused) => println!("transfer refused: {refused}"),
    }
    match alice.withdraw(1_000).await? {
        Ok(left) => println!("alice withdraws 1000 -> {left}"),
        Err(refused) => println!("alice withdraws 1000 -> refused: {refused}"),
    }
    println!(
        "balances: alice {}, bob {}",
        alice.balance().await?,
        bob.balance().await?
    );
    runtime.shutdown().await?;
    Ok(())
}
