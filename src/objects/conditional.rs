//! HTTP conditional requests and byte ranges (RFC 9110 §13 and §14) for objects postern serves
//! itself. Pure: headers in, decision out.

use std::time::SystemTime;

/// More ranges than this in one request are ignored (the whole object is sent), as nginx's
/// `max_ranges` does: many tiny ranges only cost the server.
pub const MAX_RANGES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// The validators a client sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

fn etag_list_matches(list: &str, etag: &str, weak: bool) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*"
            || if weak {
                opaque(candidate) == opaque(etag)
            } else {
                !candidate.starts_with("W/") && !etag.starts_with("W/") && candidate == etag
            }
    })
}

/// `If-None-Match` (weak comparison, as RFC 9110 asks for it): true when it names `etag` or `*`.
pub fn none_match_hits(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|list| etag_list_matches(list, etag, true))
}

/// Whole seconds: HTTP dates carry no more.
fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn parse_date(text: &str) -> Option<u64> {
    httpdate::parse_http_date(text.trim())
        .ok()
        .map(unix_seconds)
}

pub fn evaluate(c: &Conditions, etag: &str, modified: SystemTime) -> Precondition {
    let modified = unix_seconds(modified);
    if let Some(list) = c.if_match {
        if !etag_list_matches(list, etag, false) {
            return Precondition::Failed;
        }
    } else if let Some(since) = c.if_unmodified_since.and_then(parse_date)
        && modified > since
    {
        return Precondition::Failed;
    }
    if let Some(list) = c.if_none_match {
        if etag_list_matches(list, etag, true) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = c.if_modified_since.and_then(parse_date)
        && modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) Range: send the whole object.
    Full,
    /// Inclusive byte ranges, each within the object.
    Partial(Vec<(u64, u64)>),
    /// Nothing the client asked for exists: 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Reads `Range` for an object of `size` bytes, honouring `If-Range`.
pub fn ranges(
    range: Option<&str>,
    c: &Conditions,
    etag: &str,
    modified: SystemTime,
    size: u64,
) -> RangeRequest {
    let Some(range) = range else {
        return RangeRequest::Full;
    };
    if let Some(if_range) = c.if_range.map(str::trim) {
        let still_valid = if if_range.starts_with('"') || if_range.starts_with("W/") {
            etag_list_matches(if_range, etag, false)
        } else {
            parse_date(if_range) == Some(unix_seconds(modified))
        };
        if !still_valid {
            return RangeRequest::Full;
        }
    }
    let Some(specs) = range.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let mut out = Vec::new();
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((first, last)) = spec.split_once('-') else {
            return RangeRequest::Full;
        };
        let parsed = match (first.trim(), last.trim()) {
            ("", suffix) => match suffix.parse::<u64>() {
                Ok(0) => None,
                Ok(n) if size > 0 => Some((size.saturating_sub(n), size - 1)),
                Ok(_) => None,
                Err(_) => return RangeRequest::Full,
            },
            (start, end) => {
                let Ok(start) = start.parse::<u64>() else {
                    return RangeRequest::Full;
                };
                let end = if end.is_empty() {
                    u64::MAX
                } else {
                    match end.parse::<u64>() {
                        Ok(e) if e >= start => e,
                        _ => return RangeRequest::Full,
                    }
                };
                (start < size).then(|| (start, end.min(size - 1)))
            }
        };
        out.extend(parsed);
        if out.len() > MAX_RANGES {
            return RangeRequest::Full;
        }
    }
    if out.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    // Merged, the parts never overlap: the answer is at most the object plus the framing of
    // `MAX_RANGES` parts.
    RangeRequest::Partial(coalesce(out))
}

/// Overlapping and adjacent ranges merged (RFC 9110 §14.3 allows it), so that repeating a
/// range can never multiply the response.
fn coalesce(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    if ranges.len() < 2 {
        return ranges;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Whether `Range` asks for more than one range; such requests are not passed to S3, which
/// answers them with the whole object at best.
pub fn is_multi_range(range: &str) -> bool {
    range.contains(',')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ETAG: &str = "\"abc\"";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    #[test]
    fn preconditions_in_rfc_order() {
        let none = Conditions::default();
        assert_eq!(evaluate(&none, ETAG, at(1000)), Precondition::Proceed);
        let inm = Conditions {
            if_none_match: Some("\"x\", W/\"abc\""),
            ..none
        };
        assert_eq!(evaluate(&inm, ETAG, at(1000)), Precondition::NotModified);
        let ims_later = date(2000);
        let ims = Conditions {
            if_modified_since: Some(&ims_later),
            ..none
        };
        assert_eq!(evaluate(&ims, ETAG, at(1000)), Precondition::NotModified);
        let ims_earlier = date(500);
        let ims = Conditions {
            if_modified_since: Some(&ims_earlier),
            ..none
        };
        assert_eq!(evaluate(&ims, ETAG, at(1000)), Precondition::Proceed);
        // If-None-Match wins over If-Modified-Since.
        let both = Conditions {
            if_none_match: Some("\"other\""),
            if_modified_since: Some(&ims_later),
            ..none
        };
        assert_eq!(evaluate(&both, ETAG, at(1000)), Precondition::Proceed);
        let im = Conditions {
            if_match: Some("\"other\""),
            ..none
        };
        assert_eq!(evaluate(&im, ETAG, at(1000)), Precondition::Failed);
        let im_weak = Conditions {
            if_match: Some("W/\"abc\""),
            ..none
        };
        assert_eq!(evaluate(&im_weak, ETAG, at(1000)), Precondition::Failed);
        let ius = Conditions {
            if_unmodified_since: Some(&ims_earlier),
            ..none
        };
        assert_eq!(evaluate(&ius, ETAG, at(1000)), Precondition::Failed);
    }

    #[test]
    fn etag_lists() {
        assert!(none_match_hits(Some("\"a\", \"b\""), "\"b\""));
        assert!(none_match_hits(Some("W/\"b\""), "\"b\""));
        assert!(!none_match_hits(Some("\"a\""), "\"b\""));
        assert!(!none_match_hits(None, "\"b\""));
    }

    #[test]
    fn byte_ranges() {
        let c = Conditions::default();
        let r = |h: &str, size| ranges(Some(h), &c, ETAG, at(1), size);
        assert_eq!(ranges(None, &c, ETAG, at(1), 10), RangeRequest::Full);
        assert_eq!(r("bytes=0-4", 10), RangeRequest::Partial(vec![(0, 4)]));
        assert_eq!(r("bytes=5-", 10), RangeRequest::Partial(vec![(5, 9)]));
        assert_eq!(r("bytes=-3", 10), RangeRequest::Partial(vec![(7, 9)]));
        assert_eq!(r("bytes=-30", 10), RangeRequest::Partial(vec![(0, 9)]));
        assert_eq!(r("bytes=8-100", 10), RangeRequest::Partial(vec![(8, 9)]));
        assert_eq!(
            r("bytes=0-1, 4-5", 10),
            RangeRequest::Partial(vec![(0, 1), (4, 5)])
        );
        assert_eq!(r("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(
            r("bytes=0-3,2-5,6-6", 100),
            RangeRequest::Partial(vec![(0, 6)]),
            "overlapping and adjacent ranges merge"
        );
        assert_eq!(
            r("bytes=50-59,0-9", 100),
            RangeRequest::Partial(vec![(0, 9), (50, 59)])
        );
        let repeated = vec!["0-99"; 16].join(",");
        assert_eq!(
            r(&format!("bytes={repeated}"), 100),
            RangeRequest::Partial(vec![(0, 99)]),
            "a repeated range is sent once"
        );
        assert_eq!(
            r("bytes=0-49,51-99", 100),
            RangeRequest::Partial(vec![(0, 49), (51, 99)])
        );
        assert_eq!(
            r("bytes=0-49,50-,0-1", 100),
            RangeRequest::Partial(vec![(0, 99)])
        );
        assert_eq!(
            r("bytes=0-60,40-99,-70", 100),
            RangeRequest::Partial(vec![(0, 99)])
        );
        assert_eq!(r("bytes=-0", 10), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=0-0", 0), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=5-2", 10), RangeRequest::Full);
        assert_eq!(r("items=0-1", 10), RangeRequest::Full);
        assert_eq!(r("bytes=a-b", 10), RangeRequest::Full);
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(r(&many, 10), RangeRequest::Full);
    }

    #[test]
    fn if_range_falls_back_to_the_whole_object() {
        let stale = Conditions {
            if_range: Some("\"old\""),
            ..Conditions::default()
        };
        assert_eq!(
            ranges(Some("bytes=0-1"), &stale, ETAG, at(1), 10),
            RangeRequest::Full
        );
        let fresh = Conditions {
            if_range: Some(ETAG),
            ..Conditions::default()
        };
        assert_eq!(
            ranges(Some("bytes=0-1"), &fresh, ETAG, at(1), 10),
            RangeRequest::Partial(vec![(0, 1)])
        );
        let d = date(1);
        let by_date = Conditions {
            if_range: Some(&d),
            ..Conditions::default()
        };
        assert_eq!(
            ranges(Some("bytes=0-1"), &by_date, ETAG, at(1), 10),
            RangeRequest::Partial(vec![(0, 1)])
        );
    }
}
