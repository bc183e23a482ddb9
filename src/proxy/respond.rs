//! The one place that writes postern's own responses: correctly framed (explicit Content-Length),
//! JSON for API clients and a small HTML page for browsers.

use bytes::Bytes;
use http::{Method, StatusCode, header};
use pingora::http::RequestHeader;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::error::GatewayError;

/// Writes a complete local response. HEAD gets the headers only.
pub async fn send(
    session: &mut Session,
    status: StatusCode,
    content_type: &str,
    body: Bytes,
    extra_headers: &[(header::HeaderName, String)],
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra_headers.len()))?;
    resp.insert_header(header::CONTENT_TYPE, content_type)?;
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    for (name, value) in extra_headers {
        resp.append_header(name.clone(), value.as_str())?;
    }
    let head_only = session.req_header().method == Method::HEAD || body.is_empty();
    crate::services::drain::close_if_leaving(session);
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// A `302` to `url` that no cache keeps.
pub async fn redirect(session: &mut Session, url: String) -> pingora::Result<()> {
    send(
        session,
        StatusCode::FOUND,
        "text/plain; charset=utf-8",
        Bytes::new(),
        &[
            (header::LOCATION, url),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
    .await
}

/// True when the client says it takes HTML (browsers do, API clients rarely).
pub fn accepts_html(session: &Session) -> bool {
    takes_html(session.req_header())
}

fn takes_html(req: &RequestHeader) -> bool {
    req.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// Script and API clients: a bearer or other `Authorization`, or an XHR marker.
fn is_script(req: &RequestHeader) -> bool {
    req.headers.contains_key(header::AUTHORIZATION)
        || req
            .headers
            .get("x-requested-with")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"))
}

/// True for a browser navigation: GET/HEAD asking for HTML, not from a script.
pub fn wants_html(session: &Session) -> bool {
    is_navigation(session.req_header())
}

/// [`wants_html`] on a request header.
pub fn is_navigation(req: &RequestHeader) -> bool {
    (req.method == Method::GET || req.method == Method::HEAD) && takes_html(req) && !is_script(req)
}

/// Writes a JSON document with the given status.
pub async fn json(
    session: &mut Session,
    status: StatusCode,
    value: &serde_json::Value,
    extra_headers: &[(header::HeaderName, String)],
) -> pingora::Result<()> {
    let mut headers = vec![(header::CACHE_CONTROL, "no-store".to_string())];
    headers.extend_from_slice(extra_headers);
    send(
        session,
        status,
        "application/json",
        Bytes::from(value.to_string()),
        &headers,
    )
    .await
}

/// Writes `err` as JSON (`{"error":{"code","message"}}`) or as an HTML page for browsers.
pub async fn error(session: &mut Session, err: &GatewayError) -> pingora::Result<()> {
    let status = err.status();
    let mut extra = vec![(header::CACHE_CONTROL, "no-store".to_string())];
    if let GatewayError::InvalidToken = err {
        extra.push((
            header::WWW_AUTHENTICATE,
            "Bearer error=\"invalid_token\"".to_string(),
        ));
    }
    if let GatewayError::TooManyRequests { retry_after } = err {
        extra.push((header::RETRY_AFTER, retry_after.to_string()));
    }
    if let GatewayError::ImageBusy = err {
        extra.push((header::RETRY_AFTER, "1".to_string()));
    }
    if matches!(err, GatewayError::PayloadTooLarge { .. }) {
        // The client may still be sending the body we refused: do not read it, close instead.
        session.set_keepalive(None);
        extra.push((header::CONNECTION, "close".to_string()));
    }
    let (content_type, body) = error_body(wants_html(session), err);
    send(session, status, content_type, body.into(), &extra).await
}

/// The content type and body of `err`: an HTML page for browsers, else JSON.
pub fn error_body(html: bool, err: &GatewayError) -> (&'static str, String) {
    if html {
        (
            "text/html; charset=utf-8",
            html_page(err.status(), &err.to_string()),
        )
    } else {
        ("application/json", json_body(err))
    }
}

pub fn json_body(err: &GatewayError) -> String {
    let mut body = serde_json::json!({"error": {"code": err.code(), "message": err.to_string()}});
    if let GatewayError::Validation { field, .. } = err {
        body["error"]["field"] = serde_json::json!(field);
    }
    if let GatewayError::PasswordPolicy { rule, .. } = err {
        body["error"]["rule"] = serde_json::json!(rule);
    }
    if let GatewayError::ImageParam { param, .. } = err {
        body["error"]["field"] = serde_json::json!(param);
    }
    body.to_string()
}

fn html_page(status: StatusCode, message: &str) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}p{{color:#555}}</style></head>\
         <body><main><h1>{title}</h1><p>{}</p></main></body></html>\n",
        escape_html(message)
    )
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&json_body(&GatewayError::Unauthenticated)).unwrap();
        assert_eq!(v["error"]["code"], "unauthenticated");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("authentication")
        );
    }

    #[test]
    fn html_escapes_messages() {
        let page = html_page(StatusCode::BAD_GATEWAY, "<script>");
        assert!(page.contains("502 Bad Gateway"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script>"));
    }
}
