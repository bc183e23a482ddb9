//! What a file is, from its first bytes: the declared `Content-Type` and the file name's
//! extension never decide.

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_LEN: usize = 512;

/// A type postern recognizes, with the extension its keys get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub mime: &'static str,
    pub ext: &'static str,
}

const fn t(mime: &'static str, ext: &'static str) -> FileType {
    FileType { mime, ext }
}

pub const JPEG: FileType = t("image/jpeg", "jpg");
pub const PNG: FileType = t("image/png", "png");
pub const GIF: FileType = t("image/gif", "gif");
pub const WEBP: FileType = t("image/webp", "webp");
pub const AVIF: FileType = t("image/avif", "avif");
pub const HEIC: FileType = t("image/heic", "heic");
pub const PDF: FileType = t("application/pdf", "pdf");
pub const ZIP: FileType = t("application/zip", "zip");
pub const GZIP: FileType = t("application/gzip", "gz");
pub const MP4: FileType = t("video/mp4", "mp4");
pub const WEBM: FileType = t("video/webm", "webm");
pub const MP3: FileType = t("audio/mpeg", "mp3");
pub const OGG: FileType = t("audio/ogg", "ogg");
pub const WAV: FileType = t("audio/wav", "wav");
pub const TEXT: FileType = t("text/plain", "txt");
pub const BINARY: FileType = t("application/octet-stream", "bin");

/// Every type [`sniff`] can answer (what `allowed_types` may name).
pub const KNOWN: &[FileType] = &[
    JPEG, PNG, GIF, WEBP, AVIF, HEIC, PDF, ZIP, GZIP, MP4, WEBM, MP3, OGG, WAV, TEXT, BINARY,
];

/// The type of a file starting with `head` (at most [`SNIFF_LEN`] bytes; fewer when the file is
/// shorter). `complete`: `head` is the whole file.
pub fn sniff(head: &[u8], complete: bool) -> FileType {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return JPEG;
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return PNG;
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return GIF;
    }
    if starts(b"RIFF") && at(8, b"WEBP") {
        return WEBP;
    }
    if starts(b"RIFF") && at(8, b"WAVE") {
        return WAV;
    }
    if at(4, b"ftyp") {
        let brand = head.get(8..12).unwrap_or_default();
        return match brand {
            b"avif" | b"avis" => AVIF,
            b"heic" | b"heix" | b"mif1" | b"msf1" => HEIC,
            _ => MP4,
        };
    }
    if starts(b"%PDF-") {
        return PDF;
    }
    if starts(b"PK\x03\x04") {
        return ZIP;
    }
    if starts(&[0x1F, 0x8B]) {
        return GZIP;
    }
    if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return WEBM;
    }
    if starts(b"ID3") || starts(&[0xFF, 0xFB]) || starts(&[0xFF, 0xF3]) {
        return MP3;
    }
    if starts(b"OggS") {
        return OGG;
    }
    if !head.is_empty() && is_text(head, complete) {
        return TEXT;
    }
    BINARY
}

/// UTF-8 without NUL or control characters other than tab, line breaks and form feed. A
/// sequence cut at the end of an incomplete head is not held against it.
fn is_text(head: &[u8], complete: bool) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if !complete && e.error_len().is_none() => {
            // Only the last character was cut off by the window.
            match std::str::from_utf8(&head[..e.valid_up_to()]) {
                Ok(text) => text,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

/// Whether `mime` is allowed by `patterns` (`image/png`, `image/*`, `*/*`).
pub fn allowed(mime: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix("/*") {
        Some("*") => true,
        Some(family) => mime
            .split_once('/')
            .is_some_and(|(f, _)| f.eq_ignore_ascii_case(family)),
        None => p.eq_ignore_ascii_case(mime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_magic_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], false), JPEG);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", false), PNG);
        assert_eq!(sniff(b"GIF89a\x01\0", false), GIF);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ", false), WEBP);
        assert_eq!(sniff(b"\0\0\0\x1cftypavif\0\0\0\0", false), AVIF);
        assert_eq!(sniff(b"\0\0\0\x18ftypisom\0\0\0\0", false), MP4);
        assert_eq!(sniff(b"%PDF-1.7\n", false), PDF);
        assert_eq!(sniff(b"PK\x03\x04\x14\0", false), ZIP);
        assert_eq!(sniff(b"hello, world\n", true), TEXT);
        assert_eq!(sniff("h\u{e9}llo".as_bytes(), true), TEXT);
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0", true), BINARY);
        assert_eq!(sniff(b"text with a \0 NUL", true), BINARY);
        assert_eq!(sniff(b"", true), BINARY);
    }

    #[test]
    fn a_cut_utf8_sequence_counts_only_when_the_window_cut_it() {
        let mut head = b"caf".to_vec();
        head.push(0xC3);
        assert_eq!(sniff(&head, false), TEXT);
        assert_eq!(sniff(&head, true), BINARY);
    }

    #[test]
    fn html_is_text_never_html() {
        assert_eq!(sniff(b"<html><script>alert(1)</script>", true), TEXT);
        assert_eq!(
            sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>", true),
            TEXT
        );
    }

    #[test]
    fn allow_patterns() {
        let patterns = vec!["image/*".to_string(), "application/pdf".to_string()];
        assert!(allowed("image/png", &patterns));
        assert!(allowed("application/pdf", &patterns));
        assert!(!allowed("text/plain", &patterns));
        assert!(allowed("text/plain", &["*/*".to_string()]));
    }
}
