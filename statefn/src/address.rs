//! Addresses of function instances and their placement on key groups and shards.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{Error, protocol::ids::ShardId};

/// The number of key groups addresses hash onto. Fixed forever: it is part of
/// the on-disk layout (shards own contiguous ranges of key groups).
pub(crate) const KEY_GROUPS: u32 = 4096;

/// The longest instance id accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// The address of one function instance: its type name and its id.
///
/// Instances are virtual: the first message to an address creates the
/// instance with `Default` state.
///
/// # Examples
///
/// ```
/// use statefn::Address;
///
/// let a = Address::new("Account", "alice")?;
/// assert_eq!(a.to_string(), "Account/alice");
/// assert_eq!((a.type_name(), a.id()), ("Account", "alice"));
/// # Ok::<(), statefn::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address {
    type_name: Arc<str>,
    id: Arc<str>,
}

impl Address {
    /// Makes an address, checking that the id is not empty and at most
    /// [`MAX_ID_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for an empty or oversized id.
    pub fn new(type_name: impl Into<Arc<str>>, id: impl AsRef<str>) -> Result<Self, Error> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(Error::InvalidAddress {
                reason: "the instance id is empty".into(),
            });
        }
        if id.len() > MAX_ID_LEN {
            return Err(Error::InvalidAddress {
                reason: format!(
                    "the instance id is {} bytes long; the limit is {MAX_ID_LEN}",
                    id.len()
                ),
            });
        }
        Ok(Address {
            type_name: type_name.into(),
            id: id.into(),
        })
    }

    /// The function type name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key group this address belongs to: a stable hash of type name and
    /// id (FNV-1a, never the process-random `std` hasher, since it decides
    /// where state lives on disk).
    pub(crate) fn key_group(&self) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self
            .type_name
            .bytes()
            .chain(std::iter::once(0))
            .chain(self.id.bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Fold the high bits in: FNV's low bits alone spread short keys poorly.
        u32::try_from(((hash >> 32) ^ hash) % u64::from(KEY_GROUPS)).unwrap_or(0)
    }

    /// The shard owning this address when there are `shards` shards: shards own
    /// contiguous ranges of key groups. Placement is internal; tests use it
    /// to put instances on chosen shards.
    #[doc(hidden)]
    pub fn shard(&self, shards: u16) -> u16 {
        self.shard_id(shards).0
    }

    /// The shard owning this address when there are `shards` shards.
    pub(crate) fn shard_id(&self, shards: u16) -> ShardId {
        let group = u64::from(self.key_group());
        ShardId(u16::try_from(group * u64::from(shards) / u64::from(KEY_GROUPS)).unwrap_or(0))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.type_name, self.id)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_all_and_spread() {
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            let a = Address::new("Account", format!("user-{i}")).expect("valid");
            counts[usize::from(a.shard(8))] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert!(Address::new("A", "").is_err());
        assert!(Address::new("A", "x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(Address::new("A", "x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn key_group_is_stable() {
        // Pinned values, computed outside this code (FNV-1a over
        // `type \0 id`, high half folded in, modulo 4096): a change to the
        // hash would move existing state to other shards on disk and must
        // fail here, not pass silently.
        let pinned = [
            ("Account", "alice", 2991, 11, 2),
            ("Account", "bob", 921, 3, 0),
            ("Cart", "c-1", 1119, 4, 0),
            ("test.Session", "s", 1092, 4, 0),
        ];
        for (type_name, id, group, of_16, of_3) in pinned {
            let a = Address::new(type_name, id).expect("valid");
            assert_eq!(a.key_group(), group, "{type_name}/{id}");
            assert_eq!(a.shard(16), of_16, "{type_name}/{id} of 16 shards");
            assert_eq!(a.shard(3), of_3, "{type_name}/{id} of 3 shards");
        }
    }
}
