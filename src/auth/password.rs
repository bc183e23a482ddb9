//! argon2id password hashing on a bounded blocking pool, never on Pingora's worker threads.
//!
//! Unknown users are verified against a dummy hash with the same parameters, so that a login for
//! a user that does not exist costs as much as one for a user that does.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's argon2id recommendation: m=19456 KiB, t=2, p=1.
    fn default() -> Self {
        Self {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing pool is gone")]
    PoolClosed,
}

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// A new hash with the current parameters when the stored one used older ones.
    pub rehash: Option<String>,
}

#[derive(Clone)]
pub struct Passwords {
    params: HashParams,
    argon: Arc<Argon2<'static>>,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<String>,
}

impl Passwords {
    /// `workers` bounds how many hashes run at once (normally the number of cores).
    pub fn new(params: HashParams, workers: usize) -> Result<Self, PasswordError> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let dummy_hash = hash_with(&argon, "postern-dummy-password")?;
        Ok(Self {
            params,
            argon: Arc::new(argon),
            permits: Arc::new(Semaphore::new(workers.max(1))),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::PoolClosed)?;
        let argon = self.argon.clone();
        tokio::task::spawn_blocking(move || job(&argon))
            .await
            .map_err(|_| PasswordError::PoolClosed)
    }

    /// Runs other CPU-heavy password work (strength estimation) on the same bounded pool.
    pub async fn compute<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        self.run(move |_| job()).await
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |argon| hash_with(argon, &password)).await?
    }

    /// Checks `password` against `stored` (or, when there is no stored hash, against a dummy one
    /// so that the time taken does not reveal whether the user exists).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        let params = self.params;
        let (known, stored) = match stored {
            Some(hash) => (true, hash),
            None => (false, self.dummy_hash.as_str().to_string()),
        };
        self.run(move |argon| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Ok(Verified {
                    ok: false,
                    rehash: None,
                });
            };
            let matches = argon.verify_password(password.as_bytes(), &parsed).is_ok();
            let ok = known && matches;
            let rehash = if ok && !uses_params(&parsed, params) {
                Some(hash_with(argon, &password)?)
            } else {
                None
            };
            Ok(Verified { ok, rehash })
        })
        .await?
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn uses_params(hash: &PasswordHash<'_>, params: HashParams) -> bool {
    let get = |name: &str| hash.params.get_decimal(name);
    hash.algorithm.as_str() == "argon2id"
        && hash.version == Some(0x13)
        && get("m") == Some(params.memory_kib)
        && get("t") == Some(params.iterations)
        && get("p") == Some(params.parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> HashParams {
        HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_verify() {
        let p = Passwords::new(small(), 2).unwrap();
        let hash = p.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        let good = p
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap();
        assert_eq!(
            good,
            Verified {
                ok: true,
                rehash: None
            }
        );
        let bad = p.verify("wrong".into(), Some(hash)).await.unwrap();
        assert!(!bad.ok);
    }

    #[tokio::test]
    async fn unknown_users_and_garbage_hashes_never_verify() {
        let p = Passwords::new(small(), 1).unwrap();
        assert!(
            !p.verify("postern-dummy-password".into(), None)
                .await
                .unwrap()
                .ok
        );
        assert!(
            !p.verify("x".into(), Some("not a hash".into()))
                .await
                .unwrap()
                .ok
        );
    }

    #[tokio::test]
    async fn old_parameters_are_rehashed_on_success() {
        let old = Passwords::new(small(), 1).unwrap();
        let hash = old.hash("pw".into()).await.unwrap();
        let current = Passwords::new(
            HashParams {
                memory_kib: 2048,
                ..small()
            },
            1,
        )
        .unwrap();
        let v = current.verify("pw".into(), Some(hash)).await.unwrap();
        assert!(v.ok);
        let rehash = v.rehash.expect("rehash with current parameters");
        assert!(rehash.contains("m=2048"), "{rehash}");
        assert!(
            current
                .verify("wrong".into(), Some(rehash))
                .await
                .unwrap()
                .rehash
                .is_none()
        );
    }
}
