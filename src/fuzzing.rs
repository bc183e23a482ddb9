//! Fuzz targets: the parsers that read what clients and operators send. Each target takes
//! arbitrary bytes, must not panic (nor overflow its stack), and asserts what postern promises
//! about the input it accepts. `fuzz/` runs them under libFuzzer (`cargo fuzz`), and
//! `examples/fuzz_stable.rs` on a stable toolchain; `scripts/fuzz.sh` picks one.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::Method;
use pingora::http::RequestHeader;

use crate::auth::{ManualClock, Tokens};
use crate::config::Settings;
use crate::images::params::{self, Bounds, Policy};
use crate::objects::conditional::{self, Conditions, RangeRequest};
use crate::objects::key::{KeyTemplate, decode_object_path};
use crate::objects::links::LinkSigner;
use crate::policy::Principal;
use crate::proxy::headers::{cookie_value, strip_cookies};
use crate::routing::{Match, RouteTable, check_unambiguous, normalize_path};

/// A fuzz target: arbitrary bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name, for the runners.
pub const TARGETS: &[(&str, Target)] = &[
    ("path_routing", path_routing),
    ("config", config),
    ("range_conditional", range_conditional),
    ("cookies", cookies),
    ("image_params", image_params),
    ("jwt", jwt),
    ("object_key", object_key),
];

/// Inputs that start each target's corpus.
pub fn seeds(target: &str) -> Vec<&'static [u8]> {
    let seeds: &[&'static [u8]] = match target {
        "path_routing" => &[
            b"/admin/users",
            b"/%61dmin/x",
            b"//admin//x/",
            b"/admin;x/",
            b"/x/../admin",
            b"/ADMIN/%2e%2e/",
            b"/admin%2fx",
        ],
        "config" => &[
            b"[server]\nlisten = \"127.0.0.1:8080\"\n",
            b"[links]\nkeys = [\"${KEY:-a-default-key-of-some-length-0123456789}\"]\n",
            b"[[routes]]\npath = \"/\"\nupstream = \"app\"\n[upstreams.app]\nbackends = [\"http://127.0.0.1:1\"]\n",
            b"[sessions]\nidle_timeout = \"$${x}\"\n",
        ],
        "range_conditional" => &[
            b"bytes=0-99\n\n",
            b"bytes=-500\n\"etag\"\n",
            b"bytes=10-,20-30,-5\nW/\"etag\"\nSun, 06 Nov 1994 08:49:37 GMT",
            b"bytes=999999999999999999999-\n",
        ],
        "cookies" => &[
            b"postern_session=abc; other=1",
            b"a=1; postern_session=x; postern_session=y; b=2",
            b"postern_csrf=z;postern_session=;c",
        ],
        "image_params" => &[
            b"w=300&h=200&fit=cover&fm=webp&q=80",
            b"preset=thumb",
            b"w=99999&sig=abc",
            b"w=1&w=2&fm=png",
        ],
        "jwt" => &[
            b"eyJhbGciOiJIUzI1NiJ9.e30.sig",
            b"a.b.c",
            b"..",
        ],
        "object_key" => &[
            b"users/{user_id}/{path}\n/a/b.jpg",
            b"{path}\n/%2e%2e/x",
            b"shared/{path}\n/a%2fb",
            b"{username}-{path}\n/x",
        ],
        _ => &[],
    };
    seeds.to_vec()
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Splits the input at its first two newlines.
fn fields(data: &[u8]) -> (String, String, String) {
    let text = text(data);
    let mut parts = text.splitn(3, '\n');
    let mut next = || parts.next().unwrap_or("").to_string();
    (next(), next(), next())
}

/// Settings from `toml` plus one route (a config needs one).
fn settings(toml: &str) -> Option<Settings> {
    let toml = format!("{toml}\n[[routes]]\npath = \"/_postern/\"\nkind = \"builtin\"\n");
    crate::config::parse(&toml, &|_| None).ok()
}

/// Percent-decodes once, as the app behind postern would.
fn decoded_once(path: &str) -> String {
    String::from_utf8_lossy(&percent_encoding::percent_decode_str(path).collect::<Vec<u8>>())
        .into_owned()
}

/// `/admin/` for administrators, then `/` for everyone.
fn admin_table() -> Option<&'static RouteTable> {
    static TABLE: OnceLock<Option<RouteTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            crate::config::parse(
                "[upstreams.app]\nbackends = [\"http://127.0.0.1:9\"]\n\
                 [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\n\
                 access = { roles = [\"admin\"] }\n\
                 [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\naccess = \"public\"\n",
                &|_| None,
            )
            .ok()
            .map(|s| RouteTable::new(&s.routes))
        })
        .as_ref()
}

/// A normalized path has one spelling; one that passes the strict check means to the app what
/// it means to postern (no dot segment appears when it is decoded); and a path under `/admin`,
/// as the app reads it, is routed to the admin route, never past it.
pub fn path_routing(data: &[u8]) {
    let table = admin_table();
    let path = text(data);
    let Ok(normalized) = normalize_path(&path) else {
        return;
    };
    assert!(normalized.starts_with('/'), "{normalized:?}");
    assert!(!normalized.contains("//"), "{normalized:?}");
    assert!(!normalized.contains('\0'), "{normalized:?}");
    assert!(
        normalized
            .split('/')
            .all(|segment| !matches!(segment.split(';').next(), Some("." | ".."))),
        "dot segment kept in {normalized:?}"
    );
    assert_eq!(
        normalize_path(&normalized).ok().as_deref(),
        Some(&*normalized),
        "normalizing twice changes {path:?}"
    );
    if check_unambiguous(&normalized).is_err() {
        return;
    }
    let as_the_app_reads_it = decoded_once(&normalized);
    assert!(
        as_the_app_reads_it
            .split(['/', '\\'])
            .all(|segment| segment != "." && segment != ".."),
        "{path:?} reaches the app as {as_the_app_reads_it:?}"
    );
    let Some(table) = table else {
        return;
    };
    let under_admin = as_the_app_reads_it == "/admin" || as_the_app_reads_it.starts_with("/admin/");
    if under_admin {
        match table.find(None, &normalized, &Method::GET) {
            Match::Found(route) | Match::MethodNotAllowed(route) => {
                assert_eq!(route.name, "admin", "{path:?} routed past /admin/")
            }
            Match::None => unreachable!("{path:?} matched no route"),
        }
    }
}

/// A config is read or refused with named problems; `${...}` expansion terminates, and text
/// without `$` is left as it is.
pub fn config(data: &[u8]) {
    let input = text(data);
    let env = |name: &str| {
        name.len()
            .is_multiple_of(2)
            .then(|| format!("value-of-{name}"))
    };
    if let Ok(expanded) = crate::config::expand(&input, &env)
        && !input.contains('$')
    {
        assert_eq!(expanded, input);
    }
    if let Err(problems) = crate::config::parse(&input, &env) {
        assert!(!problems.is_empty(), "refused without a reason");
        assert!(problems.iter().all(|p| !p.message.is_empty()));
    }
}

/// Ranges that are served lie inside the object, in order of the request, at most
/// `MAX_RANGES` of them.
pub fn range_conditional(data: &[u8]) {
    let (range, if_range, date) = fields(data);
    let size = (data.len() as u64).saturating_mul(37) % 5000;
    let etag = "\"abc-123\"";
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let c = Conditions {
        if_match: Some(&if_range),
        if_none_match: Some(&if_range),
        if_modified_since: Some(&date),
        if_unmodified_since: Some(&date),
        if_range: (!if_range.is_empty()).then_some(&*if_range),
    };
    let _ = conditional::evaluate(&c, etag, modified);
    let _ = conditional::is_multi_range(&range);
    match conditional::ranges(Some(&range), &c, etag, modified, size) {
        RangeRequest::Partial(ranges) => {
            assert!(!ranges.is_empty() && ranges.len() <= conditional::MAX_RANGES);
            for (start, end) in ranges {
                assert!(start <= end && end < size, "{start}-{end} of {size}");
            }
        }
        RangeRequest::Full | RangeRequest::Unsatisfiable => {}
    }
}

/// postern's own cookies never reach the app: after stripping, none is left, and every other
/// cookie is kept in order.
pub fn cookies(data: &[u8]) {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let Ok(mut req) = RequestHeader::build(Method::GET, b"/", None) else {
        return;
    };
    if req.insert_header(http::header::COOKIE, value).is_err() {
        return;
    }
    let owned = ["postern_session", "postern_csrf"];
    let _ = cookie_value(&req, "postern_session");
    let others = |req: &RequestHeader| -> Vec<Vec<u8>> {
        crate::proxy::headers::cookie_pairs(req)
            .filter(|(k, _)| !owned.iter().any(|o| o.as_bytes() == *k))
            .map(|(k, v)| [k, b"=", v].concat())
            .collect()
    };
    let before = others(&req);
    if strip_cookies(&mut req, &owned).is_err() {
        return;
    }
    assert!(
        crate::proxy::headers::cookie_pairs(&req)
            .all(|(k, _)| !owned.iter().any(|o| o.as_bytes() == k)),
        "an owned cookie survived in {:?}",
        req.headers.get(http::header::COOKIE)
    );
    assert_eq!(others(&req), before, "another cookie was lost or changed");
}

/// Accepted parameters stay within the bounds and have one canonical form whatever their
/// order; a transform signature verifies for its own parameters and path only.
pub fn image_params(data: &[u8]) {
    let (query, signature, _) = fields(data);
    let bounds = Bounds {
        max_width: 2000,
        max_height: 2000,
        default_quality: 80,
    };
    let presets = BTreeMap::new();
    let Ok(Some((transform, _))) = params::parse(Some(&query), Policy::Open, &bounds, &presets)
    else {
        return;
    };
    assert!(transform.width.is_none_or(|w| (1..=2000).contains(&w)));
    assert!(transform.height.is_none_or(|h| (1..=2000).contains(&h)));
    assert!((1..=100).contains(&transform.quality));
    // The same parameters in another order are the same transform, with the same cache key
    // and signature.
    let canonical = transform.canonical();
    let reordered: Vec<&str> = query.split('&').rev().collect();
    let reordered = reordered.join("&");
    if let Ok(Some((other, _))) = params::parse(Some(&reordered), Policy::Open, &bounds, &presets) {
        assert_eq!(other.canonical(), canonical, "{query:?} vs {reordered:?}");
    }
    let signer = LinkSigner::new(vec![b"fuzzing-link-key-0123456789abcdef".to_vec()]);
    let good = signer.sign_transform("/img/a.jpg", &canonical);
    assert!(signer.verify_transform("/img/a.jpg", &canonical, &good));
    if signature != good {
        assert!(!signer.verify_transform("/img/a.jpg", &canonical, &signature));
    }
    assert!(!signer.verify_transform("/img/b.jpg", &canonical, &good));
}

fn fuzz_tokens() -> Option<&'static (Tokens, String)> {
    static TOKENS: OnceLock<Option<(Tokens, String)>> = OnceLock::new();
    TOKENS
        .get_or_init(|| {
            let settings =
                settings("[tokens]\nsecret = \"fuzzing-token-secret-0123456789-abcdef\"\n")?;
            let tokens = Tokens::new(
                settings.tokens,
                Arc::new(ManualClock::new(1_800_000_000)),
                Arc::default(),
                Duration::from_secs(5),
            )
            .ok()?;
            let user = crate::store::User {
                id: "00000000-0000-0000-0000-000000000001".into(),
                username: "ann".into(),
                email: "ann@example.com".into(),
                given_name: String::new(),
                surname: String::new(),
                status: crate::store::UserStatus::Enabled,
                password_hash: None,
                password_changed_at: None,
                custom_data: "{}".into(),
                session_epoch: 0,
                locked_until: None,
                created_at: 0,
                updated_at: 0,
                roles: vec!["staff".into()],
            };
            let issued = tokens.issue(&user, None).ok()?;
            Some((tokens, issued.token))
        })
        .as_ref()
}

/// Without the key no token verifies: of all inputs, only the token postern issued does.
pub fn jwt(data: &[u8]) {
    let Some((tokens, issued)) = fuzz_tokens() else {
        return;
    };
    let token = text(data);
    if let Ok(claims) = tokens.verified_claims(&token) {
        assert_eq!(&*token, issued, "a token postern never issued verified");
        assert_eq!(claims.sub, "00000000-0000-0000-0000-000000000001");
    }
    // The issued token with the input spliced in somewhere.
    let at = data.first().map_or(0, |b| *b as usize % (issued.len() + 1));
    let (head, tail) = issued.split_at(at);
    let spliced = format!("{head}{}{tail}", text(data.get(1..).unwrap_or_default()));
    if spliced != *issued {
        assert!(
            tokens.verified_claims(&spliced).is_err(),
            "a changed token verified: {spliced:?}"
        );
    }
}

/// A key made from a request path stays below its template's fixed prefix and has no dot
/// segment, empty segment or encoded separator.
pub fn object_key(data: &[u8]) {
    let (template, rest, _) = fields(data);
    let Ok(path) = decode_object_path(&rest) else {
        return;
    };
    assert!(!path.starts_with('/') && !path.is_empty(), "{path:?}");
    assert!(
        path.split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".."),
        "{rest:?} -> {path:?}"
    );
    let template = if KeyTemplate::check(&template).is_ok() {
        template
    } else {
        "users/{user_id}/{path}".to_string()
    };
    let ann = Principal::new(
        "u-1".into(),
        "ann".into(),
        "ann@example.com".into(),
        Vec::new(),
        None,
    );
    let Ok(key) = KeyTemplate::render(&template, &path, Some(&ann)) else {
        return;
    };
    let fixed = &template[..template.find('{').unwrap_or(template.len())];
    assert!(key.starts_with(fixed), "{key:?} left {fixed:?}");
    assert!(
        key.split('/').all(|s| s != "." && s != ".."),
        "{template:?} + {path:?} -> {key:?}"
    );
    assert!(!key.starts_with('/'), "{key:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_takes_its_seeds_and_junk() {
        for (name, target) in TARGETS {
            let seeds = seeds(name);
            assert!(!seeds.is_empty(), "{name} has no seeds");
            for seed in seeds {
                target(seed);
            }
            target(b"");
            target(&[0xff, 0x00, b'\n', b'{', b'$', b'%']);
        }
    }

    #[test]
    fn the_token_fixture_verifies_so_the_jwt_target_means_something() {
        let (tokens, issued) = fuzz_tokens().unwrap();
        assert!(tokens.verified_claims(issued).is_ok());
    }

    #[test]
    fn the_route_table_fixture_has_its_admin_route() {
        let table = admin_table().unwrap();
        assert!(matches!(
            table.find(None, "/admin/x", &Method::GET),
            Match::Found(route) if route.name == "admin"
        ));
    }
}
