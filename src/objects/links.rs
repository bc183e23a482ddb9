//! Postern-signed links: `PATH?expires=UNIX&signature=SIG`, where SIG is HMAC-SHA256 over the
//! method, the path and the expiry. Several keys verify (rotation); the first one signs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::GatewayError;

type HmacSha256 = Hmac<Sha256>;

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

pub struct LinkSigner {
    keys: Vec<Vec<u8>>,
}

impl LinkSigner {
    pub fn new(keys: Vec<Vec<u8>>) -> Self {
        Self { keys }
    }

    fn mac(key: &[u8], method: &str, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = keyed(key);
        // HEAD is a GET without the body: one link serves both.
        let method = if method == "HEAD" { "GET" } else { method };
        mac.update(method.as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string (`expires=…&signature=…`) that makes `path` fetchable until `expires`.
    pub fn sign(&self, method: &str, path: &str, expires: i64) -> String {
        let key = self.keys.first().map(Vec::as_slice).unwrap_or_default();
        let signature = Self::mac(key, method, path, expires)
            .finalize()
            .into_bytes();
        format!(
            "expires={expires}&signature={}",
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn transform_mac(key: &[u8], path: &str, canonical: &str) -> HmacSha256 {
        let mut mac = keyed(key);
        mac.update(b"image\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(canonical.as_bytes());
        mac
    }

    /// The `sig` that allows the canonical image parameters `canonical` on `path`, for routes
    /// with `images = "signed"`: base64url HMAC-SHA256 over `image\nPATH\nCANONICAL`.
    pub fn sign_transform(&self, path: &str, canonical: &str) -> String {
        let key = self.keys.first().map(Vec::as_slice).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(
            Self::transform_mac(key, path, canonical)
                .finalize()
                .into_bytes(),
        )
    }

    pub fn verify_transform(&self, path: &str, canonical: &str, signature: &str) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature.as_bytes()) else {
            return false;
        };
        self.keys.iter().any(|key| {
            Self::transform_mac(key, path, canonical)
                .verify_slice(&signature)
                .is_ok()
        })
    }

    /// Checks a link's query against `path` at time `now`: tampered → 403 `bad_signature`,
    /// authentic but past its expiry → 410 `link_expired`.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        now: i64,
    ) -> Result<(), GatewayError> {
        let mut expires = None;
        let mut signature = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "expires" => expires = value.parse::<i64>().ok(),
                "signature" => signature = URL_SAFE_NO_PAD.decode(value.as_bytes()).ok(),
                _ => {}
            }
        }
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(GatewayError::BadSignature);
        };
        let authentic = self.keys.iter().any(|key| {
            Self::mac(key, method, path, expires)
                .verify_slice(&signature)
                .is_ok()
        });
        if !authentic {
            return Err(GatewayError::BadSignature);
        }
        if now >= expires {
            return Err(GatewayError::LinkExpired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/_postern/signed/default/shared/a%20b.jpg";

    #[test]
    fn valid_expired_tampered_and_rotated() {
        let old = LinkSigner::new(vec![b"old-key-old-key-old-key-old-key!".to_vec()]);
        let query = old.sign("GET", PATH, 1000);
        assert!(old.verify("GET", PATH, Some(&query), 999).is_ok());
        assert!(old.verify("HEAD", PATH, Some(&query), 999).is_ok());
        assert!(matches!(
            old.verify("GET", PATH, Some(&query), 1000),
            Err(GatewayError::LinkExpired)
        ));
        assert!(matches!(
            old.verify(
                "GET",
                "/_postern/signed/default/shared/other.jpg",
                Some(&query),
                0
            ),
            Err(GatewayError::BadSignature)
        ));
        assert!(matches!(
            old.verify("DELETE", PATH, Some(&query), 0),
            Err(GatewayError::BadSignature)
        ));
        let later = query.replace("expires=1000", "expires=99999");
        assert!(matches!(
            old.verify("GET", PATH, Some(&later), 0),
            Err(GatewayError::BadSignature)
        ));
        assert!(matches!(
            old.verify("GET", PATH, None, 0),
            Err(GatewayError::BadSignature)
        ));

        let rotated = LinkSigner::new(vec![
            b"new-key-new-key-new-key-new-key!".to_vec(),
            b"old-key-old-key-old-key-old-key!".to_vec(),
        ]);
        assert!(rotated.verify("GET", PATH, Some(&query), 999).is_ok());
        let fresh = rotated.sign("GET", PATH, 1000);
        assert!(old.verify("GET", PATH, Some(&fresh), 999).is_err());
    }
}
