//! `[routes.upload]` on a route of kind `"uploads"`: validated into the `UploadRoute` the files
//! module defines.

use std::sync::Arc;

use serde::Deserialize;

use super::file::RouteSection;
use super::settings::StoreSettings;
use super::units::SizeValue;
use super::validate::Checker;
use crate::files::{CANNED_ACLS, MIN_PART_SIZE, UploadKey, UploadRoute, VariantSettings};
use crate::images::params::Format;
use crate::objects::sniff;

/// The largest part S3 takes.
const MAX_PART_SIZE: u64 = 5 << 30;
/// S3's part count limit times the largest part is the object limit; postern keeps single
/// files to what a part count of 10,000 allows with the configured part size.
const MAX_PARTS: u64 = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSection {
    pub max_file_size: Option<SizeValue>,
    pub max_files: Option<usize>,
    pub allowed_types: Option<Vec<String>>,
    pub acl: Option<Vec<String>>,
    pub folders: Option<Vec<String>>,
    pub client_names: Option<bool>,
    pub part_size: Option<SizeValue>,
    pub timeout: Option<String>,
    pub variant: Option<VariantSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSection {
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub format: Option<String>,
    pub quality: Option<u8>,
    pub keep_original: Option<bool>,
}

const DEFAULT_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/avif",
    "application/pdf",
    "text/plain",
];

fn allowed_type_pattern(pattern: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(family) => {
            family == "*"
                || sniff::KNOWN
                    .iter()
                    .any(|t| t.mime.starts_with(&format!("{family}/")))
        }
        None => sniff::KNOWN.iter().any(|t| t.mime == pattern),
    }
}

/// The target of a route of kind `"uploads"`.
pub(super) fn upload_route(
    c: &mut Checker,
    i: usize,
    r: &RouteSection,
    stores: &[StoreSettings],
    store: Option<usize>,
) -> Option<UploadRoute> {
    let at = |key: &str| format!("routes[{i}].upload.{key}");
    let route_at = |key: &str| format!("routes[{i}].{key}");
    let default = UploadSection::default();
    let u = r.upload.as_ref().unwrap_or(&default);

    let client_names = u.client_names.unwrap_or(false);
    let template = r
        .key
        .clone()
        .unwrap_or_else(|| crate::files::DEFAULT_KEY_TEMPLATE.into());
    let key = UploadKey::parse(&template, client_names)
        .map_err(|e| c.report(route_at("key"), e))
        .ok();

    let max_file_size = c.size(&at("max_file_size"), u.max_file_size.as_ref(), 10 << 20);
    if max_file_size == 0 {
        c.report(at("max_file_size"), "must be more than 0");
    }
    let max_files = u.max_files.unwrap_or(10);
    if max_files == 0 || max_files > 1000 {
        c.report(at("max_files"), "must be 1 to 1000");
    }
    let allowed_types: Vec<String> = u
        .allowed_types
        .clone()
        .unwrap_or_else(|| DEFAULT_TYPES.iter().map(|t| t.to_string()).collect())
        .into_iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    if allowed_types.is_empty() {
        c.report(at("allowed_types"), "list at least one type");
    }
    for (j, t) in allowed_types.iter().enumerate() {
        if !allowed_type_pattern(t) {
            let known: Vec<&str> = sniff::KNOWN.iter().map(|t| t.mime).collect();
            c.report(
                format!("routes[{i}].upload.allowed_types[{j}]"),
                format!(
                    "{t:?} is not a type postern recognizes by its bytes ({}, or a family such as \"image/*\")",
                    known.join(", ")
                ),
            );
        }
    }
    let acls = u.acl.clone().unwrap_or_else(|| vec!["private".into()]);
    if acls.is_empty() {
        c.report(
            at("acl"),
            "list at least one canned ACL (the first is the default)",
        );
    }
    for (j, acl) in acls.iter().enumerate() {
        if !CANNED_ACLS.contains(&acl.as_str()) {
            c.report(
                format!("routes[{i}].upload.acl[{j}]"),
                format!("{acl:?} is not one of {}", CANNED_ACLS.join(", ")),
            );
        }
    }
    let is_fs = matches!(
        store.and_then(|s| stores.get(s)),
        Some(StoreSettings::Filesystem { .. })
    );
    if is_fs && acls.iter().any(|a| a != "private") {
        c.report(
            at("acl"),
            "a filesystem store has no ACLs: only \"private\" applies",
        );
    }
    if let Some(StoreSettings::S3(s3)) = store.and_then(|s| stores.get(s))
        && !s3.tls_verify
    {
        c.report(
            route_at("store"),
            format!(
                "uploads to store {:?} need tls_verify = true (uploads always verify the store's certificate)",
                s3.name
            ),
        );
    }
    let folders = u.folders.clone().unwrap_or_default();
    for (j, folder) in folders.iter().enumerate() {
        if !crate::files::valid_folder(folder) {
            c.report(
                format!("routes[{i}].upload.folders[{j}]"),
                "a folder is one key segment: letters, digits, '-', '_' or '.', not '.' or '..'",
            );
        }
    }
    if !folders.is_empty() && !template.contains("{folder}") {
        c.report(
            route_at("key"),
            "folders are listed, so the key needs {folder}",
        );
    }
    let part_size = c.size(&at("part_size"), u.part_size.as_ref(), 8 << 20);
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        c.report(at("part_size"), "must be 5MiB to 5GiB (S3's part limits)");
    } else if max_file_size > part_size.saturating_mul(MAX_PARTS) {
        c.report(
            at("max_file_size"),
            "more than 10,000 parts of part_size: raise part_size",
        );
    }
    let timeout = c.duration(
        &at("timeout"),
        u.timeout.as_ref(),
        std::time::Duration::from_secs(3600),
    );
    if timeout.is_zero() {
        c.report(at("timeout"), "must be more than 0");
    }
    let variant = u.variant.as_ref().map(|v| {
        let format = match v.format.as_deref().unwrap_or("webp") {
            "webp" => Format::Webp,
            "jpeg" | "jpg" => Format::Jpeg,
            "png" => Format::Png,
            other => {
                c.report(
                    at("variant.format"),
                    format!("{other:?} is not one of \"webp\", \"jpeg\", \"png\""),
                );
                Format::Webp
            }
        };
        let quality = v.quality.unwrap_or(80);
        if !(1..=100).contains(&quality) {
            c.report(at("variant.quality"), "must be 1 to 100");
        }
        let max_width = v.max_width.unwrap_or(2048);
        let max_height = v.max_height.unwrap_or(2048);
        for (key, value) in [
            ("variant.max_width", max_width),
            ("variant.max_height", max_height),
        ] {
            if !(1..=16384).contains(&value) {
                c.report(at(key), "must be 1 to 16384");
            }
        }
        VariantSettings {
            max_width,
            max_height,
            format,
            quality,
            keep_original: v.keep_original.unwrap_or(false),
        }
    });
    let presentation =
        super::validate::object_presentation(c, i, r, std::time::Duration::from_secs(24 * 3600));
    Some(UploadRoute {
        store: store?,
        key: key?,
        max_file_size,
        max_files,
        allowed_types,
        acls,
        folders,
        client_names,
        mode: presentation.mode,
        link_ttl: presentation.link_ttl,
        cache_control: presentation.cache_control,
        inline_types: Arc::new(presentation.inline_types),
        part_size,
        timeout,
        variant,
    })
}

/// Checks between upload routes and other sections: a variant route's files fit the image
/// pipeline's source limit, and no two routes on one store give users overlapping prefixes
/// (`users/{user_id}/` beside `users/{username}/` would let a user named like another's id
/// sync that user's objects).
pub(super) fn across_routes(
    c: &mut Checker,
    routes: &[super::settings::RouteSettings],
    images: &super::settings::ImageSettings,
) {
    let uploads: Vec<(usize, &UploadRoute)> = routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.target {
            super::settings::RouteTarget::Uploads(u) => Some((i, &**u)),
            _ => None,
        })
        .collect();
    for (i, u) in &uploads {
        if u.variant.is_some() && u.max_file_size > images.max_source_size {
            c.report(
                format!("routes[{i}].upload.max_file_size"),
                format!(
                    "a route with a variant holds each image in memory: at most images.max_source_size ({} bytes)",
                    images.max_source_size
                ),
            );
        }
    }
    fn user_prefix(u: &UploadRoute) -> Option<(&str, &'static str)> {
        let template = u.key.template();
        let first = template.find('{')?;
        let placeholder = &template[first..];
        let kind = if placeholder.starts_with("{user_id}") {
            "user_id"
        } else if placeholder.starts_with("{username}") {
            "username"
        } else {
            return None;
        };
        Some((&template[..first], kind))
    }
    for (a, (i, first)) in uploads.iter().enumerate() {
        for (j, second) in &uploads[a + 1..] {
            if first.store != second.store {
                continue;
            }
            if let (Some((p1, k1)), Some((p2, k2))) = (user_prefix(first), user_prefix(second))
                && p1 == p2
                && k1 != k2
            {
                c.report(
                    format!("routes[{j}].key"),
                    format!(
                        "routes[{i}] keys the same store and prefix {p1:?} by {{{k1}}}, this one by {{{k2}}}: one user's prefix could be another's"
                    ),
                );
            }
        }
    }
}
