//! Request path normalization, done before routing so that every spelling of a path is routed
//! (and authorized) the same way the upstream app will understand it.
//!
//! - percent-encoded unreserved characters are decoded (`/%61dmin` is `/admin`, RFC 3986 §6.2.2.2);
//! - runs of `/` are merged (`//admin` is `/admin`), as nginx does by default;
//! - dot segments (`.`, `..`, also when percent-encoded) and NUL bytes are refused, never resolved:
//!   a client that sends them is probing, not browsing.
//!
//! The common case (a clean path) borrows the input and allocates nothing.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path contains a '.' or '..' segment")]
    DotSegment,
    #[error("the path contains a NUL byte or an invalid percent-encoding")]
    BadEncoding,
}

pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_clean(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path.as_bytes())?;
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." || is_encoded_dot_segment(segment) {
            return Err(PathError::DotSegment);
        }
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

fn is_clean(bytes: &[u8]) -> bool {
    let mut prev_slash = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' | 0 => return false,
            b'/' if prev_slash => return false,
            b'/' => prev_slash = true,
            b'.' if prev_slash => {
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(bytes.len(), |p| i + p);
                let segment = &bytes[i..end];
                if segment == b"." || segment == b".." {
                    return false;
                }
                prev_slash = false;
            }
            _ => prev_slash = false,
        }
        i += 1;
    }
    true
}

/// `%2e`, `.%2E` and friends: a dot segment in disguise (after unreserved decoding `%2e` is already
/// `.`, so this only catches double-encoding such as `%252e`).
fn is_encoded_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let stripped = lower.replace("%252e", ".").replace("%2e", ".");
    stripped == "." || stripped == ".."
}

fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            return Err(PathError::BadEncoding);
        }
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(PathError::BadEncoding)?;
        if value == 0 {
            return Err(PathError::BadEncoding);
        }
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(value);
        } else {
            out.push(b'%');
            out.extend(hex.iter().map(u8::to_ascii_uppercase));
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| PathError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn clean_paths_are_borrowed() {
        for p in ["/", "/public/a.css", "/a/.well-known/x", "/a/..b/c", "/x/"] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_kept() {
        assert_eq!(norm("/%61dmin/x").unwrap(), "/admin/x");
        assert_eq!(norm("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(norm("/a%20b/").unwrap(), "/a%20b/");
        assert_eq!(norm("/%7Euser").unwrap(), "/~user");
    }

    #[test]
    fn slashes_are_merged() {
        assert_eq!(norm("//admin//x").unwrap(), "/admin/x");
        assert_eq!(norm("//").unwrap(), "/");
        assert_eq!(norm("/a//").unwrap(), "/a/");
    }

    #[test]
    fn dot_segments_and_bad_encodings_are_refused() {
        for p in [
            "/public/../admin",
            "/public/./x",
            "/public/..",
            "/public/%2e%2e/admin",
            "/public/.%2E/admin",
            "/public/%252e%252e/admin",
        ] {
            assert_eq!(norm(p), Err(PathError::DotSegment), "{p}");
        }
        assert_eq!(norm("/a%00b"), Err(PathError::BadEncoding));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(norm("/a%4"), Err(PathError::BadEncoding));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
    }
}
