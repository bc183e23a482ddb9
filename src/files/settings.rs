//! What an upload route is configured with (built by `config`), and its key template.

use std::sync::Arc;
use std::time::Duration;

use crate::config::AssetMode;
use crate::images::params::Format;
use crate::objects::InlineTypes;

/// S3's canned ACLs, the only values `acl` may take.
pub const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// S3's smallest multipart part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

#[derive(Debug, Clone)]
pub struct UploadRoute {
    pub store: usize,
    pub key: UploadKey,
    pub max_file_size: u64,
    pub max_files: usize,
    /// Types (`image/png`) or families (`image/*`) accepted, by magic bytes.
    pub allowed_types: Vec<String>,
    /// The canned ACLs a client may ask for; the first is used when it asks for none.
    pub acls: Vec<String>,
    /// The folders a client may name; empty: no `folder` field.
    pub folders: Vec<String>,
    /// The client's file name may become part of the key (`{name}`).
    pub client_names: bool,
    /// How `/files/{id}/content` answers.
    pub mode: AssetMode,
    /// The longest `?expiresIn=` (and the default link, if shorter than an hour).
    pub link_ttl: Duration,
    pub cache_control: String,
    pub inline_types: Arc<InlineTypes>,
    /// S3 parts (files up to this size go up in one PUT).
    pub part_size: u64,
    /// The longest one upload request may take.
    pub timeout: Duration,
    pub variant: Option<VariantSettings>,
}

impl UploadRoute {
    /// The largest upload request: every file at its limit, with room for the multipart framing
    /// around each (64 KiB) and the text fields (1 MiB).
    pub fn max_request_body(&self) -> u64 {
        self.max_file_size
            .saturating_add(64 << 10)
            .saturating_mul(self.max_files as u64)
            .saturating_add(1 << 20)
    }
}

/// Images resized and converted when they are uploaded.
#[derive(Debug, Clone)]
pub struct VariantSettings {
    pub max_width: u32,
    pub max_height: u32,
    pub format: Format,
    pub quality: u8,
    /// Keep the uploaded bytes too (`original_key`), untouched.
    pub keep_original: bool,
}

/// An upload key template: `{user_id}`, `{username}`, `{folder}`, `{uuid}`, `{ext}`, `{name}`.
/// Empty segments (no folder) are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKey(String);

/// The key template of an upload route that names none.
pub const DEFAULT_KEY_TEMPLATE: &str = "users/{user_id}/{folder}/{uuid}.{ext}";

/// What a key is made of for one file.
pub struct KeyParts<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub folder: &'a str,
    pub uuid: &'a str,
    pub ext: &'a str,
    pub name: &'a str,
}

const PLACEHOLDERS: &[&str] = &["user_id", "username", "folder", "uuid", "ext", "name"];

impl UploadKey {
    /// Checks a template; `client_names`: whether `{name}` may be used.
    pub fn parse(template: &str, client_names: bool) -> Result<Self, String> {
        let mut rest = template;
        let mut used = Vec::new();
        while let Some(start) = rest.find('{') {
            let after = &rest[start + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
            let name = &after[..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "{{{name}}} is not one of {{user_id}}, {{username}}, {{folder}}, {{uuid}}, {{ext}}, {{name}}"
                ));
            }
            used.push(name.to_string());
            rest = &after[end + 1..];
        }
        if template.starts_with('/') {
            return Err("keys do not start with '/'".into());
        }
        if template.split('/').any(|s| s == "." || s == "..") {
            return Err("'.' and '..' segments are not allowed".into());
        }
        let has = |p: &str| used.iter().any(|u| u == p);
        if has("name") && !client_names {
            return Err("{name} puts the client's file name in the key: set upload.client_names = true to allow it".into());
        }
        if has("name") && !has("user_id") && !has("username") {
            return Err("{name} needs {user_id} or {username} in the key too: client-chosen names are per user".into());
        }
        if !has("uuid") && !has("name") {
            return Err(
                "must contain {uuid} (or {name}), or every upload would get the same key".into(),
            );
        }
        Ok(Self(template.to_string()))
    }

    pub fn template(&self) -> &str {
        &self.0
    }

    pub fn uses_user(&self) -> bool {
        self.0.contains("{user_id}") || self.0.contains("{username}")
    }

    /// The key for one file. The parts were validated (see [`valid_segment`]) except `folder`
    /// and `name`, which are checked here.
    pub fn render(&self, parts: &KeyParts) -> Result<String, &'static str> {
        for value in [parts.folder, parts.name, parts.username] {
            if !value.is_empty() && !valid_segment(value) {
                return Err("cannot be part of an object key");
            }
        }
        // One pass, so that a value that looks like a placeholder stays as it is.
        let mut rendered = String::with_capacity(self.0.len() + 64);
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find('{') {
            rendered.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('}').unwrap_or(after.len());
            rendered.push_str(match &after[..end] {
                "user_id" => parts.user_id,
                "username" => parts.username,
                "folder" => parts.folder,
                "uuid" => parts.uuid,
                "ext" => parts.ext,
                _ => parts.name,
            });
            rest = after.get(end + 1..).unwrap_or("");
        }
        rendered.push_str(rest);
        let key: Vec<&str> = rendered.split('/').filter(|s| !s.is_empty()).collect();
        if key.is_empty() || key.iter().any(|s| *s == "." || *s == "..") {
            return Err("cannot be part of an object key");
        }
        Ok(key.join("/"))
    }

    /// The part of every key that is the user's own (`users/{user_id}/`), rendered: what a sync
    /// reads back. `None` when the template does not start with a per-user prefix.
    pub fn user_prefix(&self, user_id: &str, username: &str) -> Option<String> {
        let first = self.0.find('{')?;
        let placeholder_end = self.0[first..].find('}')? + first + 1;
        let placeholder = &self.0[first..placeholder_end];
        if placeholder != "{user_id}" && placeholder != "{username}" {
            return None;
        }
        let rest = &self.0[placeholder_end..];
        if !rest.starts_with('/') {
            return None;
        }
        let value = if placeholder == "{user_id}" {
            user_id
        } else {
            username
        };
        if !valid_segment(value) {
            return None;
        }
        Some(format!("{}{value}/", &self.0[..first]))
    }
}

/// One path segment of a key: no separators, dot segments, control characters, and at most 255
/// bytes.
pub fn valid_segment(value: &str) -> bool {
    value.len() <= 255 && crate::objects::key::is_safe_segment(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(folder: &'a str, name: &'a str) -> KeyParts<'a> {
        KeyParts {
            user_id: "u1",
            username: "ann",
            folder,
            uuid: "abc",
            ext: "jpg",
            name,
        }
    }

    #[test]
    fn renders_and_drops_empty_folders() {
        let key = UploadKey::parse("users/{user_id}/{folder}/{uuid}.{ext}", false).unwrap();
        assert_eq!(
            key.render(&parts("avatars", "")).unwrap(),
            "users/u1/avatars/abc.jpg"
        );
        assert_eq!(key.render(&parts("", "")).unwrap(), "users/u1/abc.jpg");
        assert_eq!(key.user_prefix("u1", "ann").as_deref(), Some("users/u1/"));
    }

    #[test]
    fn refuses_bad_templates_and_names() {
        assert!(UploadKey::parse("users/{user_id}/{name}", false).is_err());
        assert!(UploadKey::parse("users/{user_id}/x.jpg", false).is_err());
        assert!(UploadKey::parse("/users/{uuid}", false).is_err());
        assert!(UploadKey::parse("users/../{uuid}", false).is_err());
        assert!(UploadKey::parse("users/{other}/{uuid}", false).is_err());
        assert!(UploadKey::parse("shared/{name}", true).is_err());
        let key = UploadKey::parse("users/{user_id}/{name}", true).unwrap();
        assert!(key.render(&parts("", "../x")).is_err());
        assert!(key.render(&parts("", "..")).is_err());
        assert!(key.render(&parts("", "a\\b")).is_err());
        assert!(key.render(&parts("", "a\nb")).is_err());
        assert_eq!(
            key.render(&parts("", "report.pdf")).unwrap(),
            "users/u1/report.pdf"
        );
        let shared = UploadKey::parse("shared/{uuid}.{ext}", false).unwrap();
        assert_eq!(shared.user_prefix("u1", "ann"), None);
    }
}
