//! Request body size accounting: Pingora reads bodies without a limit of its own.

use crate::error::GatewayError;

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
