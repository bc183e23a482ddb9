//! The compiled route table: (host, path, method) -> route. Pure and allocation-free when matching.

mod path;

use http::Method;

use crate::config::{ACCOUNT_API_ENDPOINTS, RouteSettings, RouteTarget};

pub use path::{PathError, check_unambiguous, normalize_path};

/// A route of the table: its settings (through `Deref`) and its position.
#[derive(Debug)]
pub struct Route {
    pub index: usize,
    settings: RouteSettings,
}

impl std::ops::Deref for Route {
    type Target = RouteSettings;

    fn deref(&self) -> &RouteSettings {
        &self.settings
    }
}

impl Route {
    /// The request path with this route's prefix removed, always starting with `/`.
    /// `/public/` also matches `/public`; `/api` matches `/api/…` but not `/apix`.
    pub fn strip_prefix<'a>(&self, path: &'a str) -> &'a str {
        let base = self.path.trim_end_matches('/');
        match path.get(base.len()..) {
            Some(rest) if rest.starts_with('/') => rest,
            _ => "/",
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        let prefix = self.path.as_bytes();
        let path = path.as_bytes();
        let same = |a: &[u8], b: &[u8]| {
            if self.case_insensitive {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let starts_with = |p: &[u8]| path.len() >= p.len() && same(&path[..p.len()], p);
        let prefix_matches = if let Some(base) = prefix.strip_suffix(b"/") {
            starts_with(prefix) || same(path, base)
        } else {
            starts_with(prefix) && matches!(path.get(prefix.len()), None | Some(b'/'))
        };
        prefix_matches && self.serves(path)
    }

    /// An account API answers only its own endpoints; other paths below it go on to later
    /// routes (its prefix is often `/`).
    fn serves(&self, path: &[u8]) -> bool {
        if !matches!(self.target, RouteTarget::AccountApi(_)) {
            return true;
        }
        let Ok(path) = std::str::from_utf8(path) else {
            return false;
        };
        let endpoint = self.strip_prefix(path).trim_matches('/');
        ACCOUNT_API_ENDPOINTS.contains(&endpoint)
    }

    fn matches_host(&self, host: &str) -> bool {
        self.host
            .as_ref()
            .is_none_or(|pattern| pattern.matches(host))
    }
}

/// What matching a request against the table found.
#[derive(Debug)]
pub enum Match<'a> {
    Found(&'a Route),
    /// A route matched host and path, but not the method.
    MethodNotAllowed(&'a Route),
    None,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(settings: &[RouteSettings]) -> Self {
        let routes = settings
            .iter()
            .enumerate()
            .map(|(index, r)| Route {
                index,
                settings: r.clone(),
            })
            .collect();
        Self { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route whose host and path match decides: a method it does not allow is
    /// `MethodNotAllowed` there, never a fall-through to a later (weaker) route. `host` may carry
    /// a port; it is ignored.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Match<'_> {
        self.find_from(0, host, path, method)
    }

    /// [`RouteTable::find`] among the routes from position `start` on.
    pub fn find_from(
        &self,
        start: usize,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> Match<'_> {
        let host = host.map(host_without_port).unwrap_or("");
        let Some(route) = self
            .routes
            .iter()
            .skip(start)
            .find(|r| r.matches_host(host) && r.matches_path(path))
        else {
            return Match::None;
        };
        match &route.methods {
            Some(methods) if !methods.contains(method) => Match::MethodNotAllowed(route),
            _ => Match::Found(route),
        }
    }
}

/// The host of a `Host` header without its port (or IPv6 brackets) and trailing dot.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
    .trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn table(routes: &str) -> RouteTable {
        let text = format!(
            "[upstreams.a]\nbackends = [\"http://127.0.0.1:1\"]\n[upstreams.b]\nbackends = [\"http://127.0.0.1:2\"]\n{routes}"
        );
        let settings = parse(&text, &|_| None).expect("valid");
        RouteTable::new(&settings.routes)
    }

    fn name<'a>(m: Match<'a>) -> &'a str {
        match m {
            Match::Found(r) => &r.name,
            Match::MethodNotAllowed(_) => "405",
            Match::None => "none",
        }
    }

    #[test]
    fn first_match_wins_and_prefix_boundaries() {
        let t = table(
            r#"
            [[routes]]
            name = "pub"
            path = "/public/"
            upstream = "a"
            [[routes]]
            name = "api"
            path = "/api"
            upstream = "a"
            [[routes]]
            name = "all"
            path = "/"
            upstream = "b"
            "#,
        );
        let get = Method::GET;
        assert_eq!(name(t.find(None, "/public/x", &get)), "pub");
        assert_eq!(name(t.find(None, "/public", &get)), "pub");
        assert_eq!(name(t.find(None, "/publicx", &get)), "all");
        assert_eq!(name(t.find(None, "/api", &get)), "api");
        assert_eq!(name(t.find(None, "/api/v1", &get)), "api");
        assert_eq!(name(t.find(None, "/apix", &get)), "all");
        assert_eq!(name(t.find(None, "/", &get)), "all");
    }

    #[test]
    fn hosts_exact_wildcard_and_ports() {
        let t = table(
            r#"
            [[routes]]
            name = "exact"
            host = "app.example.com"
            path = "/"
            upstream = "a"
            [[routes]]
            name = "wild"
            host = "*.example.com"
            path = "/"
            upstream = "b"
            "#,
        );
        let get = Method::GET;
        assert_eq!(
            name(t.find(Some("APP.example.com:8080"), "/", &get)),
            "exact"
        );
        assert_eq!(name(t.find(Some("x.example.com"), "/", &get)), "wild");
        assert_eq!(name(t.find(Some("a.b.example.com."), "/", &get)), "wild");
        assert_eq!(name(t.find(Some("example.com"), "/", &get)), "none");
        assert_eq!(name(t.find(Some("badexample.com"), "/", &get)), "none");
        assert_eq!(name(t.find(None, "/", &get)), "none");
    }

    #[test]
    fn a_disallowed_method_never_falls_through() {
        let t = table(
            r#"
            [[routes]]
            name = "read"
            path = "/docs/"
            methods = ["GET"]
            upstream = "a"
            [[routes]]
            name = "all"
            path = "/"
            upstream = "b"
            "#,
        );
        assert_eq!(name(t.find(None, "/docs/x", &Method::GET)), "read");
        assert_eq!(name(t.find(None, "/docs/x", &Method::POST)), "405");
        assert_eq!(name(t.find(None, "/other", &Method::POST)), "all");
    }

    #[test]
    fn case_insensitive_routes_match_any_letter_case() {
        let t = table(
            r#"
            [[routes]]
            name = "admin"
            path = "/admin/"
            case_insensitive = true
            upstream = "a"
            [[routes]]
            name = "api"
            path = "/api"
            upstream = "a"
            [[routes]]
            name = "all"
            path = "/"
            upstream = "b"
            "#,
        );
        let get = Method::GET;
        assert_eq!(name(t.find(None, "/ADMIN/x", &get)), "admin");
        assert_eq!(name(t.find(None, "/Admin", &get)), "admin");
        assert_eq!(name(t.find(None, "/adminx", &get)), "all");
        assert_eq!(name(t.find(None, "/API", &get)), "all");
        assert_eq!(t.routes()[0].strip_prefix("/ADMIN/x"), "/x");
    }

    #[test]
    fn methods_restrict_and_fall_through() {
        let t = table(
            r#"
            [[routes]]
            name = "read"
            path = "/r/"
            methods = ["get", "HEAD"]
            upstream = "a"
            [[routes]]
            name = "only-post"
            path = "/p/"
            methods = ["POST"]
            upstream = "a"
            "#,
        );
        assert_eq!(name(t.find(None, "/r/x", &Method::HEAD)), "read");
        assert_eq!(name(t.find(None, "/r/x", &Method::POST)), "405");
        assert_eq!(name(t.find(None, "/p/x", &Method::POST)), "only-post");
        assert_eq!(name(t.find(None, "/q", &Method::GET)), "none");
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let t = table("[[routes]]\npath = \"/app/\"\nupstream = \"a\"\n");
        let r = &t.routes()[0];
        assert_eq!(r.strip_prefix("/app/x/y"), "/x/y");
        assert_eq!(r.strip_prefix("/app/"), "/");
        assert_eq!(r.strip_prefix("/app"), "/");
    }

    #[test]
    fn an_account_api_matches_only_its_endpoints() {
        let t = table(
            r#"
            [[routes]]
            name = "postern"
            path = "/_postern/"
            kind = "builtin"
            [[routes]]
            name = "stormpath"
            path = "/"
            kind = "account-api"
            [[routes]]
            name = "app"
            path = "/"
            upstream = "a"
            "#,
        );
        for path in ["/login", "/me", "/me/", "/oauth/token", "/change"] {
            assert_eq!(
                name(t.find(None, path, &Method::POST)),
                "stormpath",
                "{path}"
            );
        }
        for path in ["/", "/loginx", "/login/x", "/oauth", "/assets/me", "/about"] {
            assert_eq!(name(t.find(None, path, &Method::GET)), "app", "{path}");
        }
        assert_eq!(name(t.find_from(2, None, "/login", &Method::GET)), "app");
    }
}
