//! [`InvocationRng`]: randomness a handler may use without giving up
//! reproducibility: seeded by the instance's address and the invocation id,
//! so a re-delivered or retried message draws the same numbers, and a test
//! that fixes its invocation ids gets the same run every time.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Address, InvocationId};

/// A random number generator seeded by the invocation (from
/// [`Context::rng`](crate::Context::rng)); use it through [`rand::Rng`]
/// (re-exported as `statefn::rand`).
///
/// ChaCha8, whose output is fixed for a seed across releases of
/// `rand_chacha`: the numbers depend only on the instance's address, the
/// invocation id and how many generators the invocation asked for before.
/// It is **not** for secrets: anyone who knows the invocation id can
/// compute the numbers.
///
/// # Examples
///
/// ```
/// use statefn::{Address, Context, InvocationId, rand::Rng};
///
/// let at = Address::new("Dice", "table-1")?;
/// let roll = |key: &str| {
///     let ctx = Context::for_test(at.clone()).with_invocation_id(InvocationId::from_key(key));
///     ctx.rng().random_range(1..=6)
/// };
/// assert_eq!(roll("game-7"), roll("game-7")); // the same invocation: the same roll
/// # Ok::<(), statefn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct InvocationRng(ChaCha8Rng);

impl InvocationRng {
    /// The `stream`-th generator of invocation `id` of instance `address`.
    pub(crate) fn new(address: &Address, id: &InvocationId, stream: u64) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [
            address.type_name().as_bytes(),
            b"\0",
            address.id().as_bytes(),
            b"\0",
        ] {
            for byte in part {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        let seed = id.stable_hash(hash);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        InvocationRng(rng)
    }
}

impl RngCore for InvocationRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_depend_on_address_id_and_stream_only() {
        let a = Address::new("T", "a").expect("valid");
        let b = Address::new("T", "b").expect("valid");
        let id = InvocationId::message(1, 2);
        let draw = |address: &Address, id: &InvocationId, stream| {
            InvocationRng::new(address, id, stream).next_u64()
        };
        assert_eq!(draw(&a, &id, 0), draw(&a, &id, 0));
        assert_ne!(draw(&a, &id, 0), draw(&b, &id, 0));
        assert_ne!(draw(&a, &id, 0), draw(&a, &id, 1));
        assert_ne!(draw(&a, &id, 0), draw(&a, &InvocationId::message(1, 3), 0));
    }

    #[test]
    fn the_first_number_is_pinned() {
        // A change here reseeds every handler: say so in the release notes.
        let a = Address::new("T", "a").expect("valid");
        let first = InvocationRng::new(&a, &InvocationId::message(1, 2), 0).next_u64();
        assert_eq!(first, 0x6de1_4af4_6929_eb0c);
    }
}
