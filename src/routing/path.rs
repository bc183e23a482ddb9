//! Request path normalization, done before routing so that every spelling of a path is routed
//! (and authorized) the same way the upstream app will understand it.
//!
//! - percent-encoded unreserved characters are decoded (`/%61dmin` is `/admin`, RFC 3986 §6.2.2.2);
//! - runs of `/` are merged (`//admin` is `/admin`), as nginx does by default;
//! - dot segments (`.`, `..`, also when percent-encoded or followed by `;` parameters, as in
//!   Tomcat's `..;`) and NUL bytes are refused, never resolved: a client that sends them is
//!   probing, not browsing.
//!
//! [`check_unambiguous`] then refuses, on routes that keep the default `strict_paths`, what
//! servers behind postern read differently from one another (see its list).
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
    #[error("the path contains {0}, which servers read in different ways")]
    Ambiguous(&'static str),
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
        let bare = segment.split(';').next().unwrap_or(segment);
        if bare == "." || bare == ".." || is_encoded_dot_segment(bare) {
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
                    .position(|&b| b == b'/' || b == b';')
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

/// Refuses, in a normalized path, the spellings that Java, Node, Python, PHP and .NET servers
/// resolve differently, so that the path postern routes is the path the app acts on:
/// `;` path parameters (Tomcat and Jetty drop them: `/admin;x/` is `/admin/`), encoded `/`, `\`
/// and `;` (decoded by some servers after routing), a literal `\` (a separator on Windows and
/// in some URL parsers), double percent-encoding (`%252F`, decoded twice by some stacks),
/// encoded control characters, and segments ending in `.` or a space (IIS drops them).
pub fn check_unambiguous(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b';' => return Err(PathError::Ambiguous("';' (path parameters)")),
            b'\\' => return Err(PathError::Ambiguous("a backslash")),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
                let value = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(PathError::BadEncoding)?;
                match value {
                    b'/' | b'\\' | b';' => {
                        return Err(PathError::Ambiguous("an encoded '/', '\\' or ';'"));
                    }
                    b'%' if bytes
                        .get(i + 3..i + 5)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        return Err(PathError::Ambiguous("double percent-encoding"));
                    }
                    0..=0x1f | 0x7f => {
                        return Err(PathError::Ambiguous("an encoded control character"));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let trailing = path.split('/').any(|segment| {
        segment.ends_with('.') || segment.ends_with(' ') || segment.ends_with("%20")
    });
    if trailing {
        return Err(PathError::Ambiguous("a segment ending in '.' or a space"));
    }
    Ok(())
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
        for p in ["/public/..;/admin", "/public/.;x/admin", "/a/%2e%2e;/b"] {
            assert_eq!(norm(p), Err(PathError::DotSegment), "{p}");
        }
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        for p in [
            "/admin;jsessionid=1/x",
            "/admin%3Bx/",
            "/admin%2Fusers",
            "/admin%2fusers",
            "/x%5Cadmin",
            "/x\\admin",
            "/admin%252Fusers",
            "/admin%0a/",
            "/admin./x",
            "/admin%20/x",
            "/admin.",
        ] {
            let normalized = norm(p).unwrap();
            assert!(
                matches!(check_unambiguous(&normalized), Err(PathError::Ambiguous(_))),
                "{p}"
            );
        }
        for p in [
            "/",
            "/a.b/c.txt",
            "/a%20b/c",
            "/%C3%A9t%C3%A9",
            "/a/.well-known/x",
            "/100%25/",
        ] {
            assert_eq!(check_unambiguous(&norm(p).unwrap()), Ok(()), "{p}");
        }
    }
}
