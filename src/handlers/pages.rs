//! The HTML pages of the built-in endpoints (sign in, register, verify, forgot, reset, change):
//! self-contained (no external assets), accessible, one look. Every form carries the CSRF token.

use crate::proxy::respond::escape_html as escape;

const STYLE: &str = r#"body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d1f23;margin:0}
main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin:0 0 1.2rem}
label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #8a8f98;border-radius:4px}
input:focus,button:focus,a:focus{outline:3px solid #2f6fde;outline-offset:1px}
button{margin-top:1.4rem;width:100%;padding:.7rem;font-size:1rem;font-weight:600;color:#fff;background:#2359c4;border:0;border-radius:4px;cursor:pointer}
.error{color:#a4161a;background:#fde8e8;padding:.6rem;border-radius:4px}
.note{color:#1d4d1f;background:#e6f4e7;padding:.6rem;border-radius:4px}
.hint{color:#5b616b;font-size:.9rem;margin:.3rem 0 0}
nav{margin-top:1.2rem;font-size:.95rem}
nav a{color:#2359c4;margin-right:1rem}"#;

/// A form field.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    /// `text`, `email` or `password`.
    pub kind: &'a str,
    pub autocomplete: &'a str,
    pub value: &'a str,
    pub required: bool,
    pub hint: Option<&'a str>,
}

impl<'a> Field<'a> {
    pub fn new(name: &'a str, label: &'a str, kind: &'a str, autocomplete: &'a str) -> Self {
        Self {
            name,
            label,
            kind,
            autocomplete,
            value: "",
            required: true,
            hint: None,
        }
    }

    pub fn value(mut self, value: &'a str) -> Self {
        self.value = value;
        self
    }

    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// A form page.
pub struct Form<'a> {
    pub title: &'a str,
    pub intro: Option<&'a str>,
    pub error: Option<&'a str>,
    pub action: &'a str,
    pub csrf: &'a str,
    pub hidden: Vec<(&'a str, &'a str)>,
    pub fields: Vec<Field<'a>>,
    pub submit: &'a str,
    /// Links under the form: (href, text).
    pub links: Vec<(String, &'a str)>,
}

fn layout(title: &str, content: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{title}</title>
<style>
{STYLE}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{content}</main>
</body>
</html>
"#,
        title = escape(title),
    )
}

fn nav(links: &[(String, &str)]) -> String {
    if links.is_empty() {
        return String::new();
    }
    let items: String = links
        .iter()
        .map(|(href, text)| format!("<a href=\"{}\">{}</a>", escape(href), escape(text)))
        .collect();
    format!("<nav>{items}</nav>\n")
}

impl Form<'_> {
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(intro) = self.intro {
            out.push_str(&format!("<p>{}</p>\n", escape(intro)));
        }
        let described = if let Some(error) = self.error {
            out.push_str(&format!(
                "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>\n",
                escape(error)
            ));
            " aria-describedby=\"form-error\" aria-invalid=\"true\""
        } else {
            ""
        };
        out.push_str(&format!(
            "<form method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
            escape(self.action),
            escape(self.csrf)
        ));
        for (name, value) in &self.hidden {
            out.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(value)
            ));
        }
        for (i, field) in self.fields.iter().enumerate() {
            let hint_id = format!("{}-hint", field.name);
            let hint = field
                .hint
                .map(|h| format!("<p class=\"hint\" id=\"{hint_id}\">{}</p>\n", escape(h)))
                .unwrap_or_default();
            let aria = match (field.hint.is_some(), described.is_empty()) {
                (true, _) => format!(" aria-describedby=\"{hint_id}\""),
                (false, false) => described.to_string(),
                (false, true) => String::new(),
            };
            let value = if field.kind == "password" {
                String::new()
            } else {
                format!(" value=\"{}\"", escape(field.value))
            };
            let text_extras = if field.kind == "password" {
                ""
            } else {
                " autocapitalize=\"none\" spellcheck=\"false\""
            };
            out.push_str(&format!(
                "<label for=\"{name}\">{label}</label>\n<input id=\"{name}\" name=\"{name}\" type=\"{kind}\" autocomplete=\"{ac}\"{text_extras}{required}{autofocus}{value}{aria}>\n{hint}",
                name = escape(field.name),
                label = escape(field.label),
                kind = escape(field.kind),
                ac = escape(field.autocomplete),
                required = if field.required { " required" } else { "" },
                autofocus = if i == 0 { " autofocus" } else { "" },
            ));
        }
        out.push_str(&format!(
            "<button type=\"submit\">{}</button>\n</form>\n",
            escape(self.submit)
        ));
        out.push_str(&nav(&self.links));
        layout(self.title, &out)
    }
}

/// A page that only says something, with links onwards.
pub fn message(title: &str, text: &str, links: &[(String, &str)]) -> String {
    let content = format!(
        "<p class=\"note\" role=\"status\">{}</p>\n{}",
        escape(text),
        nav(links)
    );
    layout(title, &content)
}

/// A page that reports a problem, with links onwards.
pub fn problem(title: &str, text: &str, links: &[(String, &str)]) -> String {
    let content = format!(
        "<p class=\"error\" role=\"alert\">{}</p>\n{}",
        escape(text),
        nav(links)
    );
    layout(title, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_self_contained_labelled_and_escaped() {
        let page = Form {
            title: "Sign in",
            intro: None,
            error: Some("wrong <b>"),
            action: "/_postern/login",
            csrf: "tok",
            hidden: vec![("return_to", "/x?a=1&b=\"2\"")],
            fields: vec![
                Field::new("username", "Username or email", "text", "username").value("<bob>"),
                Field::new("password", "Password", "password", "current-password").value("secret"),
            ],
            submit: "Sign in",
            links: vec![("/_postern/forgot".into(), "Forgot your password?")],
        }
        .render();
        assert!(page.contains("<label for=\"username\">"));
        assert!(page.contains("value=\"/x?a=1&amp;b=&quot;2&quot;\""));
        assert!(page.contains("&lt;bob&gt;"));
        assert!(page.contains("wrong &lt;b&gt;"));
        assert!(page.contains("role=\"alert\""));
        assert!(
            !page.contains("secret"),
            "password fields are never refilled"
        );
        assert!(!page.contains("src="), "no external assets");
        assert!(page.contains("href=\"/_postern/forgot\""));
    }
}
