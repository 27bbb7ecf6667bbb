//! Read-only resources given to the runtime at build time
//! ([`Builder::resource`](crate::Builder::resource)) and read by handlers
//! ([`Context::resource`](crate::Context::resource)): configuration, price
//! tables, clients of other systems. They are not state: they are not
//! stored, not part of any commit, and the same for every instance.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::Arc,
};

/// The resources, one per type.
#[derive(Default, Clone)]
pub(crate) struct Resources {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("count", &self.by_type.len())
            .finish()
    }
}

impl Resources {
    /// Adds `value`, replacing an earlier resource of the same type.
    pub(crate) fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.by_type.insert(TypeId::of::<T>(), value);
    }

    /// The resource of type `T`, if one was given.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|r| r.downcast_ref::<T>())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }
}
