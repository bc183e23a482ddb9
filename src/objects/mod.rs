//! Object stores: S3 (SigV4 signing, presigning, credentials) and the local filesystem; keys,
//! conditional requests and postern-signed links. The proxy decides when to use them.

pub mod conditional;
pub mod disposition;
pub mod fs;
pub mod key;
pub mod links;
pub mod s3;
pub mod s3_client;
pub mod sigv4;
pub mod sniff;

use std::sync::Arc;

use crate::config::StoreSettings;
use crate::metrics::Metrics;

pub use disposition::InlineTypes;
pub use fs::FsStore;
pub use key::{KeyError, KeyTemplate, decode_object_path, encode_key};
pub use links::LinkSigner;
pub use s3::S3Store;

pub enum ObjectStore {
    Fs(FsStore),
    S3(Arc<S3Store>),
}

impl ObjectStore {
    pub fn name(&self) -> &str {
        match self {
            Self::Fs(fs) => &fs.name,
            Self::S3(s3) => s3.name(),
        }
    }
}

/// The configured stores, in config order (routes refer to them by index).
pub struct ObjectStores {
    stores: Vec<ObjectStore>,
}

impl ObjectStores {
    pub fn new(settings: &[StoreSettings], metrics: &Arc<Metrics>) -> Self {
        let stores = settings
            .iter()
            .map(|s| match s {
                StoreSettings::Filesystem { name, root } => {
                    ObjectStore::Fs(FsStore::new(name.clone(), root.clone()))
                }
                StoreSettings::S3(s3) => {
                    ObjectStore::S3(Arc::new(S3Store::new(s3.clone(), metrics.clone())))
                }
            })
            .collect();
        Self { stores }
    }

    pub fn get(&self, index: usize) -> Option<&ObjectStore> {
        self.stores.get(index)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stores.iter().position(|s| s.name() == name)
    }

    pub fn s3(&self) -> impl Iterator<Item = &Arc<S3Store>> {
        self.stores.iter().filter_map(|s| match s {
            ObjectStore::S3(s3) => Some(s3),
            ObjectStore::Fs(_) => None,
        })
    }
}
