//! The HTML login page: self-contained (no external assets), accessible, with a CSRF token.

use crate::proxy::respond::escape_html as escape;

pub fn render(
    action: &str,
    csrf: &str,
    return_to: &str,
    username: &str,
    error: Option<&str>,
) -> String {
    let error_block = match error {
        Some(message) => format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(message)
        ),
        None => String::new(),
    };
    let described = if error.is_some() {
        " aria-describedby=\"login-error\" aria-invalid=\"true\""
    } else {
        ""
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>Sign in</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d1f23;margin:0}}
main{{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}}
h1{{font-size:1.4rem;margin:0 0 1.2rem}}
label{{display:block;font-weight:600;margin:.9rem 0 .3rem}}
input{{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #8a8f98;border-radius:4px}}
input:focus,button:focus{{outline:3px solid #2f6fde;outline-offset:1px}}
button{{margin-top:1.4rem;width:100%;padding:.7rem;font-size:1rem;font-weight:600;color:#fff;background:#2359c4;border:0;border-radius:4px;cursor:pointer}}
.error{{color:#a4161a;background:#fde8e8;padding:.6rem;border-radius:4px}}
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
{error_block}
<form method="post" action="{action}">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="return_to" value="{return_to}">
<label for="username">Username or email</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus value="{username}"{described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{described}>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"#,
        action = escape(action),
        csrf = escape(csrf),
        return_to = escape(return_to),
        username = escape(username),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained_and_escaped() {
        let page = render(
            "/_postern/login",
            "tok",
            "/x?a=1&b=\"2\"",
            "<bob>",
            Some("wrong"),
        );
        assert!(page.contains("<label for=\"username\">"));
        assert!(page.contains("value=\"/x?a=1&amp;b=&quot;2&quot;\""));
        assert!(page.contains("&lt;bob&gt;"));
        assert!(page.contains("role=\"alert\""));
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "no external assets"
        );
    }
}
