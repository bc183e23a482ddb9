//! How objects are presented. postern serves user content on the gateway's own origin, next to
//! its session cookie, so no object may run script there: every object response carries
//! `Content-Security-Policy: sandbox`, and any type outside the inline list (raster images, video,
//! audio, PDF and plain text by default; never HTML or SVG unless configured) is sent as an
//! attachment, whatever type the store recorded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The policy sent with every object: no script, no forms, no same-origin access.
pub const SANDBOX_POLICY: &str = "sandbox";

/// Types that browsers display without running anything.
const DEFAULT_INLINE: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "video/*",
    "audio/*",
    "application/pdf",
    "text/plain",
];

/// RFC 8187 `attr-char`: what may stand unencoded in `filename*`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Content types (`type/subtype` or `type/*`, lower case) shown inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineTypes {
    patterns: Vec<String>,
}

impl Default for InlineTypes {
    fn default() -> Self {
        Self {
            patterns: DEFAULT_INLINE.iter().map(|t| t.to_string()).collect(),
        }
    }
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

impl InlineTypes {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut patterns = Vec::with_capacity(list.len());
        for entry in list {
            let lower = entry.trim().to_ascii_lowercase();
            let valid = lower
                .split_once('/')
                .is_some_and(|(kind, sub)| is_token(kind) && (sub == "*" || is_token(sub)));
            if !valid {
                return Err(format!(
                    "{entry:?} is not a content type like \"image/png\" or \"video/*\""
                ));
            }
            patterns.push(lower);
        }
        Ok(Self { patterns })
    }

    /// Whether `content_type` (parameters allowed) may be shown inline.
    pub fn allows(&self, content_type: &str) -> bool {
        if content_type.contains(',') {
            // Several types in one header: browsers may act on any of them.
            return false;
        }
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((kind, _)) = essence.split_once('/') else {
            return false;
        };
        self.patterns.iter().any(|p| match p.strip_suffix("/*") {
            Some(wild) => wild == kind,
            None => *p == essence,
        })
    }
}

/// The `Content-Disposition` an object named by `key` must carry, when its type is not shown
/// inline: `attachment` with the key's last segment as the file name.
pub fn attachment(key: &str, content_type: &str, inline: &InlineTypes) -> Option<String> {
    if inline.allows(content_type) {
        return None;
    }
    let name = key.rsplit('/').next().unwrap_or("");
    Some(if name.is_empty() {
        "attachment".to_string()
    } else {
        format!(
            "attachment; filename*=UTF-8''{}",
            utf8_percent_encode(name, ATTR_CHAR)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_types_are_attachments() {
        let inline = InlineTypes::default();
        for t in [
            "image/jpeg",
            "IMAGE/PNG; q=1",
            "video/mp4",
            "text/plain; charset=utf-8",
        ] {
            assert!(inline.allows(t), "{t}");
        }
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/xml",
            "application/octet-stream",
            "",
            "garbage",
            "video/mp4,text/html",
        ] {
            assert!(!inline.allows(t), "{t}");
        }
        assert_eq!(
            attachment("users/1/page é.html", "text/html", &inline).as_deref(),
            Some("attachment; filename*=UTF-8''page%20%C3%A9.html")
        );
        assert_eq!(attachment("a/b.png", "image/png", &inline), None);
    }

    #[test]
    fn configured_lists_are_checked() {
        let custom = InlineTypes::parse(&["image/*".into(), "text/csv".into()]).unwrap();
        assert!(custom.allows("image/svg+xml"));
        assert!(custom.allows("text/csv"));
        assert!(!custom.allows("text/plain"));
        assert!(InlineTypes::parse(&["html".into()]).is_err());
        assert!(InlineTypes::parse(&["text/ html".into()]).is_err());
    }
}
