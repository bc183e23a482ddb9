//! Request body size accounting: Pingora reads bodies without a limit of its own.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::error::GatewayError;

/// Reads a whole (small) request body for a built-in endpoint: at most `limit` bytes, within
/// `timeout` overall.
pub async fn read_small_body(
    session: &mut Session,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|_| GatewayError::BadRequest("the request body could not be read"))?
        {
            if body.len() + chunk.len() > limit {
                return Err(GatewayError::PayloadTooLarge {
                    limit: limit as u64,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| GatewayError::BadRequest("the request body did not arrive in time"))?
}

#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    limit: u64,
    seen: u64,
}

impl BodyLimit {
    pub fn new(limit: u64) -> Self {
        Self { limit, seen: 0 }
    }

    /// Checks a declared `Content-Length` before any byte is read.
    pub fn check_declared(&self, content_length: Option<u64>) -> Result<(), GatewayError> {
        match content_length {
            Some(n) if n > self.limit => Err(GatewayError::PayloadTooLarge { limit: self.limit }),
            _ => Ok(()),
        }
    }

    /// Counts a chunk as it streams through (chunked bodies declare no length).
    pub fn admit(&mut self, chunk_len: usize) -> Result<(), GatewayError> {
        self.seen = self.seen.saturating_add(chunk_len as u64);
        if self.seen > self.limit {
            Err(GatewayError::PayloadTooLarge { limit: self.limit })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_and_streamed_limits() {
        let mut b = BodyLimit::new(10);
        assert!(b.check_declared(Some(10)).is_ok());
        assert!(b.check_declared(Some(11)).is_err());
        assert!(b.check_declared(None).is_ok());
        assert!(b.admit(6).is_ok());
        assert!(b.admit(4).is_ok());
        assert!(b.admit(1).is_err());
    }
}
