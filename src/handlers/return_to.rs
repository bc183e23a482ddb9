//! Where a browser may be sent after login: same-site relative paths, or hosts on an allowlist.
//! Everything that a browser could read as "another site" is refused: `//evil`, `/\evil`,
//! schemes, control characters, and the same tricks percent-encoded.

/// The validated target, or `None` (the caller then uses `/`).
pub fn safe_return_to(raw: &str, allowed_hosts: &[String]) -> Option<String> {
    if raw.is_empty() || raw.len() > 2048 || raw.chars().any(|c| c.is_control()) {
        return None;
    }
    let decoded: String = form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    for candidate in [raw, decoded.as_str()] {
        if candidate.contains('\\') || candidate.chars().any(|c| c.is_control()) {
            return None;
        }
    }
    if raw.starts_with('/') {
        let same_site = !raw.starts_with("//") && !decoded.starts_with("//");
        return same_site.then(|| raw.to_string());
    }
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    allowed_hosts.contains(&host).then(|| raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_pass() {
        assert_eq!(safe_return_to("/", &[]).as_deref(), Some("/"));
        assert_eq!(
            safe_return_to("/app/x?y=1#z", &[]).as_deref(),
            Some("/app/x?y=1#z")
        );
    }

    #[test]
    fn open_redirect_tricks_are_refused() {
        for attack in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "%2F%2Fevil.example",
            "/%2Fevil.example",
            "/%5Cevil.example",
            "http://app.example@evil.example/",
            "/\tx",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_return_to(attack, &[]), None, "{attack}");
        }
    }

    #[test]
    fn allowlisted_hosts_pass() {
        let allowed = vec!["app.example.com".to_string()];
        assert!(safe_return_to("https://app.example.com/x", &allowed).is_some());
        assert!(safe_return_to("https://APP.example.com:8443/x", &allowed).is_some());
        assert!(safe_return_to("https://app.example.com.evil/x", &allowed).is_none());
    }
}
