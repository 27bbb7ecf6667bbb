//! A bank: accounts keyed by name; transfers move money with a message.

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

/// Why a withdrawal or transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("insufficient funds: the balance is {balance}, {asked} was asked")]
pub struct InsufficientFunds {
    /// The balance at the time.
    pub balance: i64,
    /// The amount asked for.
    pub asked: i64,
}

/// A transfer, as published on the `transfers` egress log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transferred {
    /// The paying account.
    pub from: String,
    /// The receiving account.
    pub to: String,
    /// The amount.
    pub amount: i64,
}

/// One bank account.
#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function]
impl Account {
    /// Adds `amount` and returns the new balance.
    #[handler]
    pub fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    /// Takes `amount` out, or refuses (changing nothing) if the balance is too low.
    #[handler]
    pub fn withdraw(&mut self, amount: i64) -> Result<i64, InsufficientFunds> {
        if amount > self.balance {
            return Err(InsufficientFunds {
                balance: self.balance,
                asked: amount,
            });
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    /// Moves `amount` to account `to`: the withdrawal, the message that
    /// deposits it and the record on the `transfers` egress log commit
    /// together, and the deposit is applied exactly once.
    #[handler]
    pub fn transfer(
        &mut self,
        ctx: &mut Context,
        to: String,
        amount: i64,
    ) -> Result<i64, InsufficientFunds> {
        let left = self.withdraw(amount)?;
        ctx.send::<Account>(&to).deposit(amount);
        ctx.emit(
            "transfers",
            &Transferred {
                from: ctx.id().to_owned(),
                to,
                amount,
            },
        );
        Ok(left)
    }

    /// The current balance.
    #[handler]
    pub fn balance(&self) -> i64 {
        self.balance
    }
}
