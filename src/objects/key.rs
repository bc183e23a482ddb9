//! Object keys: from the rest of a request path (fully decoded, traversal refused) through a
//! route's template, and back into the exact encoding S3 expects in URLs and canonical requests.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::policy::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("encoded slashes, backslashes and control characters are not allowed in object paths")]
    Forbidden,
    #[error("'.' and '..' segments are not allowed in object paths")]
    DotSegment,
    #[error("the object path is not valid UTF-8")]
    NotUtf8,
    #[error("the path names no object")]
    Empty,
    #[error("this user cannot be placed in an object key")]
    UnsafeUser,
}

/// Everything but RFC 3986's unreserved characters is encoded; `/` stays the separator. This is
/// S3's rule for the canonical URI (signed once, never double-encoded).
const S3_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes a key for an S3 URL path.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, S3_KEY).to_string()
}

/// The object path below a route's prefix (`/a/b c.jpg`, still percent-encoded) as a plain
/// relative path (`a/b c.jpg`).
pub fn decode_object_path(rest: &str) -> Result<String, KeyError> {
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() || rest.ends_with('/') {
        return Err(KeyError::Empty);
    }
    let bytes: Vec<u8> = percent_decode_str(rest).collect();
    let decoded = String::from_utf8(bytes).map_err(|_| KeyError::NotUtf8)?;
    // A decoded '/' that was not a separator in the request is an encoded slash.
    if decoded.matches('/').count() != rest.matches('/').count() {
        return Err(KeyError::Forbidden);
    }
    if decoded.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(KeyError::Forbidden);
    }
    for segment in decoded.split('/') {
        match segment {
            "" => return Err(KeyError::Empty),
            "." | ".." => return Err(KeyError::DotSegment),
            _ => {}
        }
    }
    Ok(decoded)
}

/// A route's key template: `{path}` (required), `{user_id}` and `{username}`.
pub struct KeyTemplate;

impl KeyTemplate {
    /// Checks a template when the config is read.
    pub fn check(template: &str) -> Result<(), String> {
        let mut rest = template;
        let mut has_path = false;
        while let Some(start) = rest.find('{') {
            let after = &rest[start + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
            match &after[..end] {
                "path" => has_path = true,
                "user_id" | "username" => {}
                other => {
                    return Err(format!(
                        "{{{other}}} is not one of {{path}}, {{user_id}}, {{username}}"
                    ));
                }
            }
            rest = &after[end + 1..];
        }
        if !has_path {
            return Err("must contain {path}, the rest of the request path".into());
        }
        if template.starts_with('/') {
            return Err("keys do not start with '/'".into());
        }
        if template.split('/').any(|s| s == "." || s == "..") {
            return Err("'.' and '..' segments are not allowed".into());
        }
        Ok(())
    }

    /// The key for `path` (already decoded) and the requesting user.
    pub fn render(
        template: &str,
        path: &str,
        principal: Option<&Principal>,
    ) -> Result<String, KeyError> {
        let user_value = |value: Option<&str>| match value {
            Some(v) if is_safe_segment(v) => Ok(v.to_string()),
            _ => Err(KeyError::UnsafeUser),
        };
        let mut key = String::with_capacity(template.len() + path.len());
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            key.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else { break };
            match &after[..end] {
                "path" => key.push_str(path),
                "user_id" => key.push_str(&user_value(principal.map(|p| p.user_id.as_str()))?),
                "username" => key.push_str(&user_value(principal.map(|p| p.username.as_str()))?),
                other => {
                    key.push('{');
                    key.push_str(other);
                    key.push('}');
                }
            }
            rest = &after[end + 1..];
        }
        key.push_str(rest);
        Ok(key)
    }
}

/// One path segment: not empty, not a dot segment, no separators or control characters.
pub fn is_safe_segment(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && !value
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_encoding_of_special_characters() {
        assert_eq!(encode_key("a b+c%d"), "a%20b%2Bc%25d");
        assert_eq!(encode_key("dir/é ü.jpg"), "dir/%C3%A9%20%C3%BC.jpg");
        assert_eq!(encode_key("x(1)!*'.txt"), "x%281%29%21%2A%27.txt");
        assert_eq!(encode_key("~a=b&c"), "~a%3Db%26c");
        assert_eq!(encode_key("a-b_c.d~e/f"), "a-b_c.d~e/f");
    }

    #[test]
    fn object_paths_decode_and_refuse_traversal() {
        assert_eq!(decode_object_path("/a/b%20c.jpg").unwrap(), "a/b c.jpg");
        assert_eq!(decode_object_path("/a+b%2Bc").unwrap(), "a+b+c");
        assert_eq!(decode_object_path("/%E2%9C%93").unwrap(), "✓");
        assert_eq!(decode_object_path("/a%2Fb"), Err(KeyError::Forbidden));
        assert_eq!(decode_object_path("/a%2fb"), Err(KeyError::Forbidden));
        assert_eq!(decode_object_path("/a%5Cb"), Err(KeyError::Forbidden));
        assert_eq!(decode_object_path("/a%00b"), Err(KeyError::Forbidden));
        assert_eq!(decode_object_path("/a/%2E%2E/b"), Err(KeyError::DotSegment));
        assert_eq!(decode_object_path("/a/../b"), Err(KeyError::DotSegment));
        assert_eq!(decode_object_path("/%FF"), Err(KeyError::NotUtf8));
        assert_eq!(decode_object_path("/"), Err(KeyError::Empty));
        assert_eq!(decode_object_path("/dir/"), Err(KeyError::Empty));
    }

    #[test]
    fn templates_check_and_render() {
        assert!(KeyTemplate::check("users/{user_id}/{path}").is_ok());
        assert!(KeyTemplate::check("shared/").is_err());
        assert!(KeyTemplate::check("{path}/{nope}").is_err());
        assert!(KeyTemplate::check("/x/{path}").is_err());
        assert!(KeyTemplate::check("../{path}").is_err());
        let p = Principal::new("42".into(), "ann".into(), "a@x".into(), vec![], None);
        assert_eq!(
            KeyTemplate::render("users/{user_id}/{path}", "a b.jpg", Some(&p)).unwrap(),
            "users/42/a b.jpg"
        );
        assert_eq!(
            KeyTemplate::render("u/{username}/{path}", "x", Some(&p)).unwrap(),
            "u/ann/x"
        );
        assert_eq!(
            KeyTemplate::render("users/{user_id}/{path}", "x", None),
            Err(KeyError::UnsafeUser)
        );
        let sneaky = Principal::new("42".into(), "../b".into(), "a@x".into(), vec![], None);
        assert_eq!(
            KeyTemplate::render("u/{username}/{path}", "x", Some(&sneaky)),
            Err(KeyError::UnsafeUser)
        );
    }
}
