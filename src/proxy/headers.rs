//! Header hygiene between client and upstream: identity headers a client must never set,
//! hop-by-hop headers, and `X-Forwarded-*`.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName};
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};

/// Every header postern owns starts with this; all of them are removed from client requests.
const OWN_PREFIX: &[u8] = b"x-postern-";

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Compares header names treating `_` as `-` (names are already lower case in `http`).
fn same_spelling(candidate: &[u8], canonical: &[u8]) -> bool {
    candidate.len() == canonical.len()
        && candidate
            .iter()
            .zip(canonical)
            .all(|(&a, &b)| a == b || (a == b'_' && b == b'-'))
}

fn starts_with_spelling(candidate: &[u8], prefix: &[u8]) -> bool {
    candidate.len() >= prefix.len() && same_spelling(&candidate[..prefix.len()], prefix)
}

/// Removes identity headers in any case and with `_` for `-`: the configured names and anything
/// under `x-postern-`. Allocates only when such a header is present.
pub fn strip_identity_headers(req: &mut RequestHeader, configured: &[HeaderName]) {
    let is_identity = |name: &HeaderName| {
        let n = name.as_str().as_bytes();
        starts_with_spelling(n, OWN_PREFIX)
            || configured
                .iter()
                .any(|c| same_spelling(n, c.as_str().as_bytes()))
    };
    if !req.headers.keys().any(is_identity) {
        return;
    }
    let doomed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| is_identity(n))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
];

/// Names listed in `Connection` (e.g. `Connection: close, X-Secret`), lower-cased.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| {
            HeaderName::from_bytes(token.trim().to_ascii_lowercase().as_bytes()).ok()
        })
        .filter(|name| name != header::UPGRADE && name != header::CONNECTION)
        .collect()
}

/// Removes hop-by-hop headers from a request going upstream. An upgrade request (WebSocket)
/// keeps `Connection: upgrade` and `Upgrade`, which are the point of it. `TE: trailers` is kept.
pub fn strip_hop_by_hop_request(req: &mut RequestHeader, is_upgrade: bool) {
    for name in connection_listed(&req.headers) {
        req.remove_header(&name);
    }
    for name in HOP_BY_HOP.iter() {
        if is_upgrade && *name == header::CONNECTION {
            continue;
        }
        req.remove_header(name);
    }
    if !is_upgrade {
        req.remove_header(&header::UPGRADE);
    }
    let te_trailers_only = req
        .headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    if !te_trailers_only {
        req.remove_header(&header::TE);
    }
    if is_upgrade {
        // Whatever else the client listed, the upstream only needs to know about the upgrade.
        let _ = req.insert_header(header::CONNECTION, "upgrade");
    }
}

/// Removes hop-by-hop headers from an upstream response (a 101 keeps its upgrade headers).
pub fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    let switching = resp.status.as_u16() == 101;
    for name in connection_listed(&resp.headers) {
        resp.remove_header(&name);
    }
    for name in HOP_BY_HOP.iter() {
        if switching && *name == header::CONNECTION {
            continue;
        }
        resp.remove_header(name);
    }
    if !switching {
        resp.remove_header(&header::UPGRADE);
    }
}

/// Passes the verified identity to the upstream app.
pub fn set_identity(
    req: &mut RequestHeader,
    names: &crate::config::IdentityHeaders,
    principal: &crate::policy::Principal,
) -> pingora::Result<()> {
    req.insert_header(names.user_id.clone(), principal.user_id.as_str())?;
    req.insert_header(names.user.clone(), principal.username.as_str())?;
    req.insert_header(names.email.clone(), principal.email.as_str())?;
    req.insert_header(names.roles.clone(), principal.roles.join(","))?;
    Ok(())
}

/// The host the client asked for: `Host`, else the request target's authority.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(req: &RequestHeader) -> Option<&str> {
    let value = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name` in the request's `Cookie` header(s).
pub fn cookie_value<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Removes cookie `name` from the request, keeping the others (the app never sees postern's
/// session). Allocates only when the cookie is present.
pub fn strip_cookie(req: &mut RequestHeader, name: &str) -> pingora::Result<()> {
    if cookie_value(req, name).is_none() {
        return Ok(());
    }
    let kept: Vec<String> = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != name))
        .map(str::to_owned)
        .collect();
    req.remove_header(&header::COOKIE);
    if !kept.is_empty() {
        req.insert_header(header::COOKIE, kept.join("; "))?;
    }
    Ok(())
}

pub fn is_trusted(peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)))
}

/// Sets `X-Forwarded-For/-Proto/-Host`. Client-sent values are kept (and extended) only when the
/// direct peer is a trusted proxy; otherwise they are replaced.
pub fn set_forwarded(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    trusted: bool,
    scheme: &str,
    host: Option<&str>,
) -> pingora::Result<()> {
    let peer_text = peer.map(|ip| ip.to_string());
    let existing_for = req
        .headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let forwarded_for = match (trusted, existing_for, peer_text) {
        (true, Some(chain), Some(ip)) => Some(format!("{chain}, {ip}")),
        (_, _, Some(ip)) => Some(ip),
        (_, _, None) => None,
    };
    match forwarded_for {
        Some(value) => req.insert_header(X_FORWARDED_FOR, value)?,
        None => {
            req.remove_header(&X_FORWARDED_FOR);
        }
    }
    let keep = |name: &HeaderName, req: &RequestHeader| trusted && req.headers.contains_key(name);
    if !keep(&X_FORWARDED_PROTO, req) {
        req.insert_header(X_FORWARDED_PROTO, scheme)?;
    }
    if !keep(&X_FORWARDED_HOST, req) {
        match host {
            Some(host) => req.insert_header(X_FORWARDED_HOST, host)?,
            None => {
                req.remove_header(&X_FORWARDED_HOST);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn identity_headers_go_in_every_spelling() {
        let custom = HeaderName::from_static("x-remote-user");
        let mut req = request(&[
            ("X-Postern-User", "mallory"),
            ("x_postern_user_id", "1"),
            ("X_POSTERN_ROLES", "admin"),
            ("x-PoStErN-email", "m@x"),
            ("X_Remote_User", "root"),
            ("X-Other", "kept"),
        ]);
        strip_identity_headers(&mut req, &[custom]);
        let names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-other"]);
    }

    #[test]
    fn hop_by_hop_request_headers_are_removed() {
        let mut req = request(&[
            ("Connection", "keep-alive, X-Secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "s"),
            ("Proxy-Connection", "x"),
            ("TE", "gzip"),
            ("Upgrade", "h2c"),
            ("Accept", "*/*"),
        ]);
        strip_hop_by_hop_request(&mut req, false);
        let names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn upgrade_requests_keep_upgrade_headers() {
        let mut req = request(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("TE", "trailers"),
        ]);
        strip_hop_by_hop_request(&mut req, true);
        assert_eq!(req.headers["connection"], "upgrade");
        assert_eq!(req.headers["upgrade"], "websocket");
        assert_eq!(req.headers["te"], "trailers");
    }

    #[test]
    fn forwarded_headers_from_untrusted_and_trusted_peers() {
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let sent = [
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
        ];
        let mut req = request(&sent);
        set_forwarded(&mut req, Some(peer), false, "http", Some("app.local")).unwrap();
        assert_eq!(req.headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(req.headers["x-forwarded-proto"], "http");
        assert_eq!(req.headers["x-forwarded-host"], "app.local");

        let mut req = request(&sent);
        set_forwarded(&mut req, Some(peer), true, "http", Some("app.local")).unwrap();
        assert_eq!(req.headers["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(req.headers["x-forwarded-host"], "evil.example");
    }

    #[test]
    fn session_cookie_is_found_and_stripped() {
        let mut req = request(&[
            ("Cookie", "a=1; __Host-postern=tok; b=2"),
            ("Cookie", "c=3"),
        ]);
        assert_eq!(cookie_value(&req, "__Host-postern"), Some("tok"));
        assert_eq!(cookie_value(&req, "c"), Some("3"));
        strip_cookie(&mut req, "__Host-postern").unwrap();
        assert_eq!(req.headers["cookie"], "a=1; b=2; c=3");
        let mut only = request(&[("Cookie", "__Host-postern=tok")]);
        strip_cookie(&mut only, "__Host-postern").unwrap();
        assert!(only.headers.get("cookie").is_none());
    }

    #[test]
    fn trust_is_by_cidr() {
        let nets = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted(Some("10.9.9.9".parse().unwrap()), &nets));
        assert!(!is_trusted(Some("11.0.0.1".parse().unwrap()), &nets));
        assert!(!is_trusted(None, &nets));
    }
}
