use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function(message_derive(Debug, Clone, PartialEq))]
impl Account {
    #[handler]
    fn deposit(&mut self, amount: i64, memo: String) {
        self.balance += amount;
        let _ = memo;
    }

    #[handler]
    fn close(&mut self) {
        self.balance = 0;
    }
}

fn main() {
    let message = AccountMessage::Deposit {
        amount: 5,
        memo: "rent".to_owned(),
    };
    let copy = message.clone();
    assert_eq!(message, copy);
    assert_ne!(copy, AccountMessage::Close {});
    assert_eq!(
        format!("{message:?}"),
        r#"Deposit { amount: 5, memo: "rent" }"#
    );
    let bytes = statefn::encode_message::<Account>(&message).expect("encodes");
    assert_eq!(
        statefn::decode_message::<Account>(&bytes).expect("decodes"),
        message
    );
}
