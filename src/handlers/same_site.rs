//! Cross-site request forgery defence for built-in endpoints that a browser authenticates with
//! the session cookie. A state-changing request is accepted only when
//! - `Sec-Fetch-Site`, if sent, is `same-origin` or `none` (typed by the user), and `Origin`, if
//!   sent, is this host, or an origin the route's CORS rule admits; and
//! - it could not have been sent by a plain cross-site form: its type is JSON, or it carries an
//!   `X-CSRF-Token` header equal to the CSRF cookie (both force a CORS preflight cross-site).
//!
//! Bearer-authenticated calls never reach this check: a browser does not attach them on its own.

use http::header;
use pingora::http::RequestHeader;

use super::constant_time_eq;
use crate::error::GatewayError;
use crate::proxy::headers;

pub const CSRF_HEADER: &str = "x-csrf-token";

fn text(req: &RequestHeader, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// `host[:port]` in lower case without the scheme's default port.
fn authority_without_default_port(authority: &str, scheme: &str) -> String {
    let lower = authority.trim().to_ascii_lowercase();
    let default = match scheme {
        "https" => ":443",
        _ => ":80",
    };
    match lower.strip_suffix(default) {
        Some(bare) => bare.to_string(),
        None => lower,
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to.
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let (Some((scheme, authority)), Some(host)) = (origin.split_once("://"), host) else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    authority_without_default_port(authority, &scheme)
        == authority_without_default_port(host, &scheme)
}

/// Refuses a cookie-authenticated state-changing request that may come from another site.
/// `origin_allowed`: the route's CORS rule admits the request's `Origin`.
pub fn check(
    req: &RequestHeader,
    csrf_cookie: &str,
    origin_allowed: bool,
) -> Result<(), GatewayError> {
    check_origin(req, origin_allowed)?;
    let essence = text(req, header::CONTENT_TYPE)
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    let token_matches = match (
        text(req, CSRF_HEADER),
        headers::cookie_value(req, csrf_cookie),
    ) {
        (Some(sent), Some(cookie)) => {
            !cookie.is_empty() && constant_time_eq(sent.trim().as_bytes(), cookie.as_bytes())
        }
        _ => false,
    };
    if json || token_matches {
        Ok(())
    } else {
        Err(GatewayError::CrossSite)
    }
}

/// [`check`] for the file API, where scripts send multipart bodies: `X-Requested-With` (any
/// value) also proves a script sent the request, since no cross-site form can set it and
/// cross-site scripts need the route's CORS rule to.
pub fn check_script(
    req: &RequestHeader,
    csrf_cookie: &str,
    origin_allowed: bool,
) -> Result<(), GatewayError> {
    if req.headers.contains_key("x-requested-with") {
        return check_origin(req, origin_allowed);
    }
    check(req, csrf_cookie, origin_allowed)
}

/// The `Origin` and `Sec-Fetch-Site` part of [`check`]: for the built-in HTML forms, whose
/// CSRF field is compared with the cookie when the body is read.
pub fn check_origin(req: &RequestHeader, origin_allowed: bool) -> Result<(), GatewayError> {
    let origin = text(req, header::ORIGIN);
    let own_origin = origin.is_some_and(|o| is_own_origin(o, headers::request_host(req)));
    if let Some(origin) = origin
        && !own_origin
        && !(origin_allowed && origin != "null")
    {
        return Err(GatewayError::CrossSite);
    }
    let fetch_site = text(req, "sec-fetch-site");
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
        && !(origin_allowed && origin.is_some())
    {
        return Err(GatewayError::CrossSite);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/_postern/admin/users", None).unwrap();
        req.append_header("host", "gw.example:8080").unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn verdict(headers: &[(&str, &str)], cors: bool) -> bool {
        check(&request(headers), "__Host-postern_csrf", cors).is_ok()
    }

    #[test]
    fn same_site_json_passes_cross_site_forms_do_not() {
        let json = ("content-type", "application/json; charset=utf-8");
        assert!(verdict(&[json], false));
        assert!(verdict(
            &[json, ("origin", "http://GW.example:8080")],
            false
        ));
        assert!(verdict(&[json, ("sec-fetch-site", "same-origin")], false));
        assert!(!verdict(&[("content-type", "text/plain")], false));
        assert!(!verdict(
            &[("content-type", "application/x-www-form-urlencoded")],
            false
        ));
        assert!(!verdict(&[], false));
        assert!(!verdict(&[json, ("origin", "http://evil.example")], false));
        assert!(!verdict(&[json, ("origin", "null")], false));
        assert!(!verdict(
            &[json, ("origin", "http://gw.example:9999")],
            false
        ));
        assert!(!verdict(&[json, ("sec-fetch-site", "cross-site")], false));
        assert!(!verdict(&[json, ("sec-fetch-site", "same-site")], false));
        assert!(verdict(
            &[
                json,
                ("origin", "https://app.example"),
                ("sec-fetch-site", "cross-site")
            ],
            true
        ));
        assert!(!verdict(&[json, ("origin", "null")], true));
    }

    #[test]
    fn a_csrf_header_matching_the_cookie_stands_in_for_json() {
        let cookie = ("cookie", "__Host-postern_csrf=abc123");
        assert!(verdict(&[cookie, ("x-csrf-token", "abc123")], false));
        assert!(!verdict(&[cookie, ("x-csrf-token", "abc124")], false));
        assert!(!verdict(&[("x-csrf-token", "abc123")], false));
        assert!(!verdict(
            &[("cookie", "__Host-postern_csrf="), ("x-csrf-token", "")],
            false
        ));
    }

    #[test]
    fn default_ports_are_the_same_origin() {
        assert!(is_own_origin("https://a.example", Some("a.example:443")));
        assert!(is_own_origin("http://a.example:80", Some("a.example")));
        assert!(!is_own_origin("https://a.example", Some("a.example:80")));
        assert!(!is_own_origin("a.example", Some("a.example")));
    }
}
