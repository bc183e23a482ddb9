//! Referer/Origin allowlists and CORS: pure decisions about where a request says it comes from.

use std::time::Duration;

/// `https://app.example.com`, `https://*.example.com`, `app.example.com` (any scheme), `*.example.com`;
/// an explicit port must match, otherwise any port does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Option<String>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// `.example.com`: any subdomain.
    Suffix(String),
}

/// The scheme, host and port of an origin or URL (`https://a.example.com:8443/path`).
fn split_origin(url: &str) -> Option<(Option<&str>, String, Option<u16>)> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port_text) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port_text {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((
        scheme,
        host.trim_end_matches('.').to_ascii_lowercase(),
        port,
    ))
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} must look like \"https://app.example.com\" or \"*.example.com\"");
        let (scheme, host, port) = split_origin(text).ok_or_else(bad)?;
        if text.contains("://") && text.split_once("://").is_some_and(|(_, r)| r.contains('/')) {
            return Err(bad());
        }
        let scheme = scheme.map(str::to_ascii_lowercase);
        if scheme
            .as_deref()
            .is_some_and(|s| s != "http" && s != "https")
        {
            return Err(bad());
        }
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                HostMatch::Suffix(format!(".{suffix}"))
            }
            None if !host.is_empty() && !host.contains('*') => HostMatch::Exact(host),
            _ => return Err(bad()),
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether an origin or URL (from `Origin` or `Referer`) matches.
    pub fn matches(&self, url: &str) -> bool {
        let Some((scheme, host, port)) = split_origin(url) else {
            return false;
        };
        let scheme_ok = match (&self.scheme, scheme) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        let host_ok = match &self.host {
            HostMatch::Exact(h) => *h == host,
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        };
        let port_ok = self.port.is_none() || self.port == port;
        scheme_ok && host_ok && port_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefererRule {
    pub allow: Vec<OriginPattern>,
    /// Whether a request with neither `Origin` nor `Referer` passes (direct navigation, privacy
    /// settings and some clients send none).
    pub allow_missing: bool,
}

impl RefererRule {
    /// Judges by `Origin` when present, else by `Referer`.
    pub fn allows(&self, origin: Option<&str>, referer: Option<&str>) -> bool {
        match origin.filter(|o| *o != "null").or(referer) {
            None => self.allow_missing,
            Some(source) => self.allow.iter().any(|p| p.matches(source)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<OriginPattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsRule {
    pub origins: CorsOrigins,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub credentials: bool,
    pub max_age: Duration,
}

impl CorsRule {
    pub fn allows_origin(&self, origin: &str) -> bool {
        match &self.origins {
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|p| p.matches(origin)),
        }
    }

    /// `Access-Control-Allow-Origin` for an allowed origin: the origin itself (always, so that
    /// credentials work and caches key on it with `Vary: Origin`).
    pub fn response_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("access-control-allow-origin", origin.to_string()),
            ("vary", "Origin".to_string()),
        ];
        if self.credentials {
            headers.push(("access-control-allow-credentials", "true".to_string()));
        }
        if !self.expose_headers.is_empty() {
            headers.push((
                "access-control-expose-headers",
                self.expose_headers.join(", "),
            ));
        }
        headers
    }

    /// Headers of the answer to a preflight, or `None` when the method or a header is not allowed.
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: Option<&str>,
    ) -> Option<Vec<(&'static str, String)>> {
        if !self.allows_origin(origin)
            || !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
        {
            return None;
        }
        let asked: Vec<String> = request_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !asked
            .iter()
            .all(|h| self.headers.iter().any(|a| a.eq_ignore_ascii_case(h)))
        {
            return None;
        }
        let mut headers = self.response_headers(origin);
        headers.push(("access-control-allow-methods", self.methods.join(", ")));
        if !self.headers.is_empty() {
            headers.push(("access-control-allow-headers", self.headers.join(", ")));
        }
        headers.push(("access-control-max-age", self.max_age.as_secs().to_string()));
        Some(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> OriginPattern {
        OriginPattern::parse(text).unwrap()
    }

    #[test]
    fn origin_patterns() {
        assert!(p("https://app.example.com").matches("https://app.example.com"));
        assert!(p("https://app.example.com").matches("https://APP.example.com:443/page?x"));
        assert!(!p("https://app.example.com").matches("http://app.example.com"));
        assert!(!p("https://app.example.com").matches("https://app.example.com.evil.net"));
        assert!(p("*.example.com").matches("http://a.b.example.com/x"));
        assert!(!p("*.example.com").matches("https://example.com"));
        assert!(!p("*.example.com").matches("https://badexample.com"));
        assert!(p("http://localhost:3000").matches("http://localhost:3000/"));
        assert!(!p("http://localhost:3000").matches("http://localhost:4000/"));
        assert!(!p("app.example.com").matches("https://user@app.example.com"));
        for bad in ["", "ftp://x", "https://a/b", "a.*.com", "*"] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn referer_rule_prefers_origin_and_handles_missing() {
        let rule = RefererRule {
            allow: vec![p("https://shop.example.com")],
            allow_missing: false,
        };
        assert!(rule.allows(None, Some("https://shop.example.com/cart")));
        assert!(!rule.allows(None, Some("https://evil.example/")));
        assert!(!rule.allows(
            Some("https://evil.example"),
            Some("https://shop.example.com/")
        ));
        assert!(!rule.allows(None, None));
        assert!(
            RefererRule {
                allow_missing: true,
                ..rule
            }
            .allows(None, None)
        );
    }

    #[test]
    fn preflights() {
        let cors = CorsRule {
            origins: CorsOrigins::List(vec![p("https://app.example.com")]),
            methods: vec!["GET".into(), "POST".into()],
            headers: vec!["content-type".into(), "x-csrf".into()],
            expose_headers: vec![],
            credentials: true,
            max_age: Duration::from_secs(600),
        };
        let ok = cors
            .preflight(
                "https://app.example.com",
                "POST",
                Some("Content-Type, X-CSRF"),
            )
            .unwrap();
        assert!(ok.contains(&(
            "access-control-allow-origin",
            "https://app.example.com".into()
        )));
        assert!(ok.contains(&("access-control-allow-credentials", "true".into())));
        assert!(ok.contains(&("access-control-max-age", "600".into())));
        assert!(
            cors.preflight("https://app.example.com", "DELETE", None)
                .is_none()
        );
        assert!(
            cors.preflight("https://app.example.com", "GET", Some("x-other"))
                .is_none()
        );
        assert!(
            cors.preflight("https://evil.example", "GET", None)
                .is_none()
        );
    }
}
