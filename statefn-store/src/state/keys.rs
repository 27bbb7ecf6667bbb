//! Key layout: `[shard: u16 BE][caller key]`, so that one shard's entries
//! are contiguous and in the caller's key order.

use super::StoreError;

/// Bytes of the shard prefix.
pub(crate) const PREFIX_LEN: usize = 2;

/// fjall's key limit (its journal stores key lengths as u16).
const MAX_STORED_KEY: usize = u16::MAX as usize;

/// The longest caller key.
pub(crate) const MAX_KEY: usize = MAX_STORED_KEY - PREFIX_LEN;

pub(crate) fn prefix(shard: u16) -> [u8; PREFIX_LEN] {
    shard.to_be_bytes()
}

pub(crate) fn stored_key(shard: u16, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    if key.len() > MAX_KEY {
        return Err(StoreError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY,
        });
    }
    let mut stored = Vec::with_capacity(PREFIX_LEN + key.len());
    stored.extend_from_slice(&prefix(shard));
    stored.extend_from_slice(key);
    Ok(stored)
}

/// The caller's part of a stored key.
pub(crate) fn caller_key(stored: &[u8]) -> Vec<u8> {
    stored.get(PREFIX_LEN..).unwrap_or_default().to_vec()
}
