//! Header hygiene between client and upstream: identity headers a client must never set,
//! hop-by-hop headers, and `X-Forwarded-*`.

use std::net::IpAddr;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderName};
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};

/// Every header postern owns starts with this; all of them are removed from client requests.
const OWN_PREFIX: &[u8] = b"x-postern-";

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Compares header names treating `-` and `_` as the same character in either direction (CGI,
/// WSGI, PHP and Rack map both to `_`); names are already lower case in `http`.
fn same_spelling(candidate: &[u8], canonical: &[u8]) -> bool {
    let fold = |b: u8| if b == b'_' { b'-' } else { b };
    candidate.len() == canonical.len()
        && candidate
            .iter()
            .zip(canonical)
            .all(|(&a, &b)| fold(a) == fold(b))
}

fn starts_with_spelling(candidate: &[u8], prefix: &[u8]) -> bool {
    candidate.len() >= prefix.len() && same_spelling(&candidate[..prefix.len()], prefix)
}

/// Removes every header whose name satisfies `doomed`. Allocates only when one is present.
fn remove_headers_where(req: &mut RequestHeader, doomed: impl Fn(&HeaderName) -> bool) {
    if !req.headers.keys().any(&doomed) {
        return;
    }
    let names: Vec<HeaderName> = req.headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in names {
        req.remove_header(&name);
    }
}

/// Removes identity headers in any case and with `_` and `-` interchanged: the configured names
/// and anything under `x-postern-`.
pub fn strip_identity_headers(req: &mut RequestHeader, configured: &[HeaderName]) {
    remove_headers_where(req, |name| {
        let n = name.as_str().as_bytes();
        starts_with_spelling(n, OWN_PREFIX)
            || configured
                .iter()
                .any(|c| same_spelling(n, c.as_str().as_bytes()))
    });
}

/// Headers through which a client could claim another address, scheme, host or URL, or make
/// the app act on another path or method than the one postern routed: these names and anything
/// starting with one of `CLAIM_PREFIXES`, in any spelling.
const CLIENT_CLAIMS: &[&str] = &[
    "forwarded",
    "forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-rewrite-url",
    "x-host",
    "x-url-scheme",
    "front-end-https",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
const CLAIM_PREFIXES: &[&str] = &["x-forwarded", "x-original", "x-envoy-"];

/// What a trusted proxy may tell the app (spelled exactly so): the client chain, scheme, host and
/// port. URL rewrites and method overrides are never believed, from anyone: a load balancer
/// passes them through from its own clients.
const FROM_TRUSTED_PROXIES: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
];

fn is_client_claim(name: &[u8]) -> bool {
    CLIENT_CLAIMS
        .iter()
        .any(|claim| same_spelling(name, claim.as_bytes()))
        || CLAIM_PREFIXES
            .iter()
            .any(|prefix| starts_with_spelling(name, prefix.as_bytes()))
}

/// Removes forwarding claims: all of them from an untrusted peer; from a trusted proxy all but
/// the address, scheme, host and port headers in their usual spelling.
pub fn strip_client_claims(req: &mut RequestHeader, trusted: bool) {
    remove_headers_where(req, |name| {
        let n = name.as_str().as_bytes();
        is_client_claim(n) && !(trusted && FROM_TRUSTED_PROXIES.iter().any(|k| k.as_bytes() == n))
    });
}

/// Whether the request asks for a WebSocket upgrade: the only protocol switch passed to the app
/// (an `h2c` upgrade would let a client talk HTTP/2 to the app past every rule).
pub fn is_websocket_upgrade(req: &RequestHeader) -> bool {
    req.headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
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
    names: &IdentityNames,
    principal: &crate::policy::Principal,
) -> pingora::Result<()> {
    let Some(values) = principal.header_values() else {
        tracing::warn!(
            user_id = %principal.user_id,
            "the user's name, email or roles cannot be sent as identity headers"
        );
        return pingora::Error::e_explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "an identity value cannot be a header value",
        );
    };
    for (name, value) in names.0.iter().zip(values) {
        req.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}

/// The identity headers' names as written on the wire (user id, user, email, roles), made
/// once: Pingora would otherwise copy a configured name on every insert.
pub struct IdentityNames([Bytes; 4]);

impl IdentityNames {
    pub fn new(names: &crate::config::IdentityHeaders) -> Self {
        Self(
            names
                .all()
                .map(|n| Bytes::copy_from_slice(n.as_str().as_bytes())),
        )
    }
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

/// The `name=value` pairs of every `Cookie` header, as bytes: one cookie with a byte that is not
/// ASCII must not hide the others.
pub fn cookie_pairs(req: &RequestHeader) -> impl Iterator<Item = (&[u8], &[u8])> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(|pair| pair.trim_ascii())
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()),
            None => (pair, &pair[pair.len()..]),
        })
}

/// The value of cookie `name` (the first one when it is sent twice), if it is text.
pub fn cookie_value<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    cookie_pairs(req)
        .find(|(k, _)| *k == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Removes the cookies named in `names` from the request, byte for byte, keeping the others in
/// one `Cookie` header. Allocates only when one of them is present.
pub fn strip_cookies(req: &mut RequestHeader, names: &[impl AsRef<str>]) -> pingora::Result<()> {
    let owned = |k: &[u8]| names.iter().any(|n| n.as_ref().as_bytes() == k);
    if !cookie_pairs(req).any(|(k, _)| owned(k)) {
        return Ok(());
    }
    let mut kept: Vec<u8> = Vec::new();
    for (k, v) in cookie_pairs(req).filter(|(k, _)| !owned(k)) {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(k);
        kept.push(b'=');
        kept.extend_from_slice(v);
    }
    req.remove_header(&header::COOKIE);
    if !kept.is_empty() {
        let value = http::HeaderValue::from_bytes(&kept).map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "cookie header", e)
        })?;
        req.insert_header(header::COOKIE, value)?;
    }
    Ok(())
}

pub fn is_trusted(peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)))
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
        .map(|ip| ip.to_canonical())
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` hop that is not itself a trusted proxy (the leftmost when all are). Hops
/// left of the first untrusted one are the client's own claims and are never believed.
pub fn client_address(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !is_trusted(Some(peer), trusted) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = req
        .headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','));
    for hop in hops {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(Some(ip), trusted) {
            break;
        }
    }
    Some(client)
}

/// The request as it reached postern, for the forwarding headers.
pub struct ForwardedFor<'a> {
    pub peer: Option<IpAddr>,
    pub client: Option<IpAddr>,
    pub trusted: bool,
    pub scheme: &'a str,
    pub host: Option<&'a str>,
}

/// Every value of a list header, joined: a proxy may have added its own header line.
fn joined(req: &RequestHeader, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// An RFC 7239 node: IPv6 in brackets and quotes.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`, `Forwarded` and `X-Real-IP`. Client-sent values survive
/// (extended with this hop) only when the direct peer is a trusted proxy; `strip_client_claims`
/// has already removed them otherwise.
pub fn set_forwarded(req: &mut RequestHeader, f: &ForwardedFor) -> pingora::Result<()> {
    let peer_text = f.peer.map(|ip| ip.to_canonical().to_string());
    let forwarded_for = match (f.trusted, joined(req, &X_FORWARDED_FOR), &peer_text) {
        (true, Some(chain), Some(ip)) => Some(format!("{chain}, {ip}")),
        (_, _, Some(ip)) => Some(ip.clone()),
        (_, _, None) => None,
    };
    match forwarded_for {
        Some(value) => req.insert_header(X_FORWARDED_FOR, value)?,
        None => {
            req.remove_header(&X_FORWARDED_FOR);
        }
    }
    let keep = |name: &HeaderName, req: &RequestHeader| f.trusted && req.headers.contains_key(name);
    if !keep(&X_FORWARDED_PROTO, req) {
        req.insert_header(X_FORWARDED_PROTO, f.scheme)?;
    }
    if !keep(&X_FORWARDED_HOST, req) {
        match f.host {
            Some(host) => req.insert_header(X_FORWARDED_HOST, host)?,
            None => {
                req.remove_header(&X_FORWARDED_HOST);
            }
        }
    }
    match f.client {
        Some(client) => req.insert_header(X_REAL_IP, client.to_string())?,
        None => {
            req.remove_header(&X_REAL_IP);
        }
    }
    let mut element = String::with_capacity(64);
    if let Some(peer) = f.peer {
        element.push_str("for=");
        element.push_str(&forwarded_node(peer.to_canonical()));
        element.push(';');
    }
    element.push_str("proto=");
    element.push_str(f.scheme);
    if let Some(host) = f.host.filter(|h| !h.contains(['"', '\\'])) {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    let forwarded = match joined(req, &header::FORWARDED).filter(|_| f.trusted) {
        Some(chain) => format!("{chain}, {element}"),
        None => element,
    };
    req.insert_header(header::FORWARDED, forwarded)?;
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

    fn forwarded(req: &mut RequestHeader, peer: &str, trusted: bool) {
        let peer: IpAddr = peer.parse().unwrap();
        let nets: Vec<IpNet> = if trusted {
            vec!["10.0.0.0/8".parse().unwrap()]
        } else {
            Vec::new()
        };
        strip_client_claims(req, trusted);
        let client = client_address(req, Some(peer), &nets);
        let f = ForwardedFor {
            peer: Some(peer),
            client,
            trusted,
            scheme: "http",
            host: Some("app.local"),
        };
        set_forwarded(req, &f).unwrap();
    }

    #[test]
    fn forwarded_headers_from_untrusted_and_trusted_peers() {
        let sent = [
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=1.1.1.1"),
            ("X-Real-IP", "1.1.1.1"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("X-Original-URL", "/admin"),
            ("X-Forwarded-Prefix", "/admin"),
        ];
        let mut req = request(&sent);
        forwarded(&mut req, "10.1.2.3", false);
        assert_eq!(req.headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(req.headers["x-forwarded-proto"], "http");
        assert_eq!(req.headers["x-forwarded-host"], "app.local");
        assert_eq!(req.headers["x-real-ip"], "10.1.2.3");
        assert_eq!(
            req.headers["forwarded"],
            "for=10.1.2.3;proto=http;host=\"app.local\""
        );
        assert!(req.headers.get("x_forwarded_for").is_none());
        assert!(req.headers.get("x-original-url").is_none());
        assert!(req.headers.get("x-forwarded-prefix").is_none());

        let mut req = request(&sent);
        forwarded(&mut req, "10.1.2.3", true);
        assert_eq!(req.headers["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(req.headers["x-forwarded-host"], "evil.example");
        assert_eq!(req.headers["x-real-ip"], "1.1.1.1");
        assert!(req.headers.get("x_forwarded_for").is_none());
        assert!(
            req.headers.get("x-original-url").is_none(),
            "URL rewrites are never believed"
        );
        assert!(req.headers.get("x-forwarded-prefix").is_none());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Some("10.0.0.1".parse().unwrap());
        let at = |xff: &[&str], peer: Option<IpAddr>| {
            let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("X-Forwarded-For", *v)).collect();
            client_address(&request(&headers), peer, &nets).map(|ip| ip.to_string())
        };
        assert_eq!(at(&["6.6.6.6, 2.2.2.2"], peer).as_deref(), Some("2.2.2.2"));
        assert_eq!(
            at(&["6.6.6.6", "2.2.2.2, 10.0.0.9"], peer).as_deref(),
            Some("2.2.2.2")
        );
        assert_eq!(
            at(&["10.0.0.8, 10.0.0.9"], peer).as_deref(),
            Some("10.0.0.8")
        );
        assert_eq!(
            at(&["[2001:db8::1]:443"], peer).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(at(&["junk"], peer).as_deref(), Some("10.0.0.1"));
        assert_eq!(at(&[], peer).as_deref(), Some("10.0.0.1"));
        let untrusted = Some("7.7.7.7".parse().unwrap());
        assert_eq!(at(&["2.2.2.2"], untrusted).as_deref(), Some("7.7.7.7"));
        let mapped = Some("::ffff:7.7.7.7".parse().unwrap());
        assert_eq!(at(&[], mapped).as_deref(), Some("7.7.7.7"));
    }

    #[test]
    fn session_cookie_is_found_and_stripped() {
        let mut req = request(&[
            ("Cookie", "a=1; __Host-postern=tok; b=2"),
            ("Cookie", "c=3"),
        ]);
        assert_eq!(cookie_value(&req, "__Host-postern"), Some("tok"));
        assert_eq!(cookie_value(&req, "c"), Some("3"));
        strip_cookies(&mut req, &["__Host-postern"]).unwrap();
        assert_eq!(req.headers["cookie"], "a=1; b=2; c=3");
        let mut only = request(&[("Cookie", "__Host-postern=tok")]);
        strip_cookies(&mut only, &["__Host-postern"]).unwrap();
        assert!(only.headers.get("cookie").is_none());
    }

    #[test]
    fn cookies_are_parsed_as_bytes() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let raw =
            http::HeaderValue::from_bytes(b"pref=caf\xe9; __Host-postern=tok; x=\xff1").unwrap();
        req.append_header("cookie", raw).unwrap();
        assert_eq!(cookie_value(&req, "__Host-postern"), Some("tok"));
        strip_cookies(&mut req, &["__Host-postern", "postern_csrf"]).unwrap();
        assert_eq!(req.headers["cookie"].as_bytes(), b"pref=caf\xe9; x=\xff1");
    }

    #[test]
    fn identity_names_with_underscores_match_dashes_too() {
        let custom = HeaderName::from_static("remote_user");
        let mut req = request(&[
            ("Remote-User", "root"),
            ("REMOTE_USER", "root2"),
            ("X-Keep", "1"),
        ]);
        strip_identity_headers(&mut req, &[custom]);
        let names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn trust_is_by_cidr() {
        let nets = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted(Some("10.9.9.9".parse().unwrap()), &nets));
        assert!(!is_trusted(Some("11.0.0.1".parse().unwrap()), &nets));
        assert!(!is_trusted(None, &nets));
    }
}
