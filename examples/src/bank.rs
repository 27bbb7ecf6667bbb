//! A bank: accounts keyed by name; transfers move money with a message.

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

/// Why a deposit, withdrawal or transfer was refused; a refused call
/// changes nothing. Over HTTP it is the `details` of a 422, such as
/// `{"insufficient_funds": {"balance": 70, "asked": 1000}}`.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BankError {
    /// Amounts are positive: a negative deposit would be a withdrawal that
    /// skips the balance check, a negative transfer a theft.
    #[error("the amount must be positive, not {amount}")]
    NotPositive {
        /// The amount asked for.
        amount: i64,
    },
    /// The balance is lower than the amount.
    #[error("insufficient funds: the balance is {balance}, {asked} was asked")]
    InsufficientFunds {
        /// The balance at the time.
        balance: i64,
        /// The amount asked for.
        asked: i64,
    },
    /// The new balance would pass the largest one an account can hold
    /// (`i64::MAX`); it is refused rather than wrapped around.
    #[error(
        "the balance {balance} cannot take {amount} more: the largest balance is {}",
        i64::MAX
    )]
    Overflow {
        /// The balance at the time.
        balance: i64,
        /// The amount asked for.
        amount: i64,
    },
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
    /// Adds `amount` (positive) and returns the new balance.
    #[handler]
    pub fn deposit(&mut self, amount: i64) -> Result<i64, BankError> {
        positive(amount)?;
        self.balance = self
            .balance
            .checked_add(amount)
            .ok_or(BankError::Overflow {
                balance: self.balance,
                amount,
            })?;
        Ok(self.balance)
    }

    /// Takes `amount` (positive) out, or refuses if the balance is too low.
    #[handler]
    pub fn withdraw(&mut self, amount: i64) -> Result<i64, BankError> {
        positive(amount)?;
        if amount > self.balance {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                asked: amount,
            });
        }
        // Cannot overflow: 0 < amount <= balance.
        self.balance -= amount;
        Ok(self.balance)
    }

    /// Moves `amount` (positive) to account `to`: the withdrawal, the message
    /// that deposits it and the record on the `transfers` egress log commit
    /// together, and the deposit is applied exactly once.
    ///
    /// The deposit is refused only if it would take `to` past the largest
    /// balance (`i64::MAX`, about 9.2 × 10¹⁸); like any `Err` of a handler
    /// reached by a message, that refusal is logged and the amount is not
    /// returned. A real bank would ask `to` first, with request/reply.
    #[handler]
    pub fn transfer(
        &mut self,
        ctx: &mut Context,
        to: String,
        amount: i64,
    ) -> Result<i64, BankError> {
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

/// `Ok` for a positive amount.
fn positive(amount: i64) -> Result<(), BankError> {
    if amount > 0 {
        Ok(())
    } else {
        Err(BankError::NotPositive { amount })
    }
}

#[cfg(test)]
mod tests {
    use super::{Account, BankError};

    #[test]
    fn non_positive_amounts_are_refused_and_change_nothing() {
        let mut account = Account::default();
        assert_eq!(account.deposit(10), Ok(10));
        for amount in [0, -1, i64::MIN] {
            let refused = Err(BankError::NotPositive { amount });
            assert_eq!(account.deposit(amount), refused);
            assert_eq!(account.withdraw(amount), refused);
        }
        assert_eq!(account.balance(), 10);
    }

    #[test]
    fn a_deposit_past_the_largest_balance_is_refused_not_wrapped() {
        let mut account = Account::default();
        assert_eq!(account.deposit(i64::MAX), Ok(i64::MAX));
        assert_eq!(
            account.deposit(1),
            Err(BankError::Overflow {
                balance: i64::MAX,
                amount: 1
            })
        );
        assert_eq!(account.withdraw(i64::MAX), Ok(0));
    }
}
