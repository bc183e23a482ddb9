//! The console's layout and form pieces. Everything interpolated is escaped here or by the
//! caller through [`esc`]; pages load only the console's own stylesheet.

use std::fmt::Write;

pub use crate::proxy::respond::escape_html as esc;

/// The console's sections, in navigation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Users,
    Roles,
    Events,
    Files,
    Import,
}

impl Section {
    fn label(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Users => "Users",
            Self::Roles => "Roles",
            Self::Events => "Events",
            Self::Files => "Files",
            Self::Import => "Import",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Overview => "",
            Self::Users => "users",
            Self::Roles => "roles",
            Self::Events => "events",
            Self::Files => "files",
            Self::Import => "import",
        }
    }
}

/// A message at the top of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flash {
    Notice(String),
    Error(String),
}

/// What every console page shares.
pub struct Frame<'a> {
    /// The console's path without a trailing slash, e.g. `/_postern/console`.
    pub console: &'a str,
    /// The signed-in admin.
    pub admin: &'a str,
    /// Whether the files section exists (an upload route is configured).
    pub files: bool,
    /// Reload the page every this many seconds (the overview).
    pub refresh: Option<u32>,
}

impl Frame<'_> {
    /// A console path: `rest` below the console, e.g. `users/ID`.
    pub fn href(&self, rest: &str) -> String {
        if rest.is_empty() {
            format!("{}/", self.console)
        } else {
            format!("{}/{rest}", self.console)
        }
    }

    pub fn page(
        &self,
        title: &str,
        section: Section,
        flash: Option<&Flash>,
        content: &str,
    ) -> String {
        let mut nav = String::new();
        for s in [
            Section::Overview,
            Section::Users,
            Section::Roles,
            Section::Events,
            Section::Files,
            Section::Import,
        ] {
            if s == Section::Files && !self.files {
                continue;
            }
            let current = if s == section {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(
                nav,
                "<a href=\"{}\"{current}>{}</a>",
                esc(&self.href(s.path())),
                s.label()
            );
        }
        let flash = match flash {
            Some(Flash::Notice(text)) => {
                format!("<p class=\"notice\" role=\"status\">{}</p>\n", esc(text))
            }
            Some(Flash::Error(text)) => {
                format!("<p class=\"error\" role=\"alert\">{}</p>\n", esc(text))
            }
            None => String::new(),
        };
        let refresh = self
            .refresh
            .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">\n"))
            .unwrap_or_default();
        format!(
            r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
{refresh}<title>{title} · postern console</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
<span class="brand">postern console</span>
<nav aria-label="Console">{nav}</nav>
<span class="who">Signed in as {admin}</span>
</header>
<main id="main">
<h1>{title}</h1>
{flash}{content}</main>
</body>
</html>
"##,
            title = esc(title),
            css = esc(&self.href("console.css")),
            admin = esc(self.admin),
        )
    }
}

/// A query string (`?a=1&b=2`, empty pairs left out), or nothing.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        serializer.append_pair(name, value);
        any = true;
    }
    if any {
        format!("?{}", serializer.finish())
    } else {
        String::new()
    }
}

/// What a path segment keeps unencoded: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment, percent-encoded.
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// Unix seconds as an RFC 3339 UTC time, in a `<time>` element.
pub fn time(at: i64) -> String {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64);
    let text = humantime::format_rfc3339_seconds(when).to_string();
    let shown = text.replace('T', " ").replace('Z', " UTC");
    format!("<time datetime=\"{text}\">{}</time>", esc(&shown))
}

/// The opening of a POST form with its CSRF field; close it with `</form>`.
pub fn form_open(action: &str, csrf: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"{}\">\n<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        esc(action),
        esc(class),
        esc(csrf)
    )
}

pub fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
        esc(name),
        esc(value)
    )
}

/// A one-button form: `action` field `value`, plus `extra` hidden fields.
pub fn action_button(
    action: &str,
    csrf: &str,
    value: &str,
    label: &str,
    class: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut out = form_open(action, csrf, "inline");
    out.push_str(&hidden("action", value));
    for (name, v) in extra {
        out.push_str(&hidden(name, v));
    }
    let _ = writeln!(
        out,
        "<button type=\"submit\" class=\"{}\">{}</button>\n</form>",
        esc(class),
        esc(label)
    );
    out
}

/// A labelled input.
pub fn input(name: &str, label: &str, kind: &str, value: &str, extra: &str) -> String {
    format!(
        "<label for=\"f-{name}\">{label}</label>\n<input id=\"f-{name}\" name=\"{name}\" type=\"{kind}\" value=\"{value}\"{extra}>\n",
        name = esc(name),
        label = esc(label),
        kind = esc(kind),
        value = esc(value),
    )
}

/// A labelled select; `options` are (value, text).
pub fn select(name: &str, label: &str, options: &[(String, String)], selected: &str) -> String {
    let mut out = format!(
        "<label for=\"f-{name}\">{label}</label>\n<select id=\"f-{name}\" name=\"{name}\">\n",
        name = esc(name),
        label = esc(label)
    );
    for (value, text) in options {
        let chosen = if value == selected { " selected" } else { "" };
        let _ = writeln!(
            out,
            "<option value=\"{}\"{chosen}>{}</option>",
            esc(value),
            esc(text)
        );
    }
    out.push_str("</select>\n");
    out
}

/// A table that scrolls sideways on a narrow screen; cells are HTML.
pub fn table(caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">No {}.</p>\n", esc(caption));
    }
    let mut out = format!(
        "<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"{caption}\">\n<table>\n<caption>{caption}</caption>\n<thead><tr>",
        caption = esc(caption)
    );
    for h in headers {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

/// Previous/next links for a page of `shown` items at `offset`; `href(offset)` builds a link.
pub fn pager(
    offset: i64,
    limit: i64,
    shown: usize,
    total: Option<i64>,
    href: impl Fn(i64) -> String,
) -> String {
    let mut out = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    if offset > 0 {
        let _ = write!(
            out,
            "<a href=\"{}\" rel=\"prev\">← Previous</a>",
            esc(&href((offset - limit).max(0)))
        );
    }
    let end = offset + shown as i64;
    let range = match total {
        Some(total) => format!("{}–{end} of {total}", (offset + 1).min(end.max(1))),
        None if shown == 0 => "none".to_string(),
        None => format!("{}–{end}", offset + 1),
    };
    let _ = write!(out, "<span>{}</span>", esc(&range));
    let more = match total {
        Some(total) => end < total,
        None => shown as i64 == limit,
    };
    if more {
        let _ = write!(
            out,
            "<a href=\"{}\" rel=\"next\">Next →</a>",
            esc(&href(offset + limit))
        );
    }
    out.push_str("</nav>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_marks_the_section_escapes_and_loads_only_its_stylesheet() {
        let frame = Frame {
            console: "/_postern/console",
            admin: "<root>",
            files: false,
            refresh: None,
        };
        let page = frame.page(
            "Users & roles",
            Section::Users,
            Some(&Flash::Error("bad <thing>".into())),
            "<p>x</p>",
        );
        assert!(
            page.contains("<a href=\"/_postern/console/users\" aria-current=\"page\">Users</a>")
        );
        assert!(
            !page.contains(">Files<"),
            "no files section without uploads"
        );
        assert!(page.contains("Signed in as &lt;root&gt;"));
        assert!(page.contains("bad &lt;thing&gt;"));
        assert!(page.contains("Users &amp; roles"));
        assert_eq!(
            page.matches("href=\"").count(),
            7,
            "skip link, css, five sections"
        );
        assert!(!page.contains("<script"));
        assert!(!page.contains("style="));
    }

    #[test]
    fn pager_links_and_ranges() {
        let p = pager(50, 50, 50, Some(120), |o| format!("/u?offset={o}"));
        assert!(p.contains("href=\"/u?offset=0\" rel=\"prev\""));
        assert!(p.contains("51–100 of 120"));
        assert!(p.contains("href=\"/u?offset=100\" rel=\"next\""));
        let last = pager(100, 50, 20, Some(120), |o| format!("/u?offset={o}"));
        assert!(!last.contains("rel=\"next\""));
        let unknown = pager(0, 50, 50, None, |o| format!("/e?offset={o}"));
        assert!(unknown.contains("rel=\"next\""));
    }

    #[test]
    fn queries_skip_empty_values_and_times_are_utc() {
        assert_eq!(query(&[("q", "a b&c"), ("role", "")]), "?q=a+b%26c");
        assert_eq!(query(&[("q", "")]), "");
        assert!(time(0).contains("1970-01-01 00:00:00 UTC"));
        assert_eq!(segment("a/b c-d"), "a%2Fb%20c-d");
    }
}
