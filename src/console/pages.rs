//! The console's pages as HTML, from what the handler looked up. Every form posts back to the
//! console with the CSRF field; every read and every action works without JavaScript.

use std::fmt::Write;

use super::charts::{Chart, Unit};
use super::history::Point;
use super::html::{
    Frame, action_button, esc, form_open, hidden, input, pager, query, segment, select, table, time,
};
use crate::accounts::import::{ImportOptions, ImportReport};
use crate::store::{Event, FileRecord, RoleInfo, SessionRecord, User, UserSort, UserStatus};

/// Statuses as the filters and forms offer them.
const STATUSES: [UserStatus; 3] = [
    UserStatus::Enabled,
    UserStatus::Disabled,
    UserStatus::Unverified,
];

fn status_cell(status: UserStatus) -> String {
    format!("<span class=\"status-{0}\">{0}</span>", status.as_str())
}

fn role_chips(roles: &[String]) -> String {
    roles
        .iter()
        .map(|r| format!("<span class=\"role-chip\">{}</span>", esc(r)))
        .collect()
}

fn full_name(user: &User) -> String {
    format!("{} {}", user.given_name, user.surname)
        .trim()
        .to_string()
}

fn size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Gauges shown above the overview's charts.
pub struct Totals {
    pub users: i64,
    pub sessions_active: i64,
    pub mail_queue: i64,
    pub image_queue: i64,
}

pub fn overview(frame: &Frame, totals: &Totals, points: &[Point], live: bool) -> String {
    let series = |f: &dyn Fn(&Point) -> Option<f64>| -> Vec<(i64, Option<f64>)> {
        points.iter().map(|p| (p.at, f(p))).collect()
    };
    let charts = [
        Chart {
            id: "requests",
            title: "Requests per second",
            unit: Unit::PerSecond,
            points: series(&|p| Some(p.requests_per_second)),
        },
        Chart {
            id: "errors",
            title: "Server errors (5xx)",
            unit: Unit::Percent,
            points: series(&|p| p.error_ratio),
        },
        Chart {
            id: "p99",
            title: "Latency p99",
            unit: Unit::Seconds,
            points: series(&|p| p.p99_seconds),
        },
        Chart {
            id: "sessions",
            title: "Active sessions",
            unit: Unit::Count,
            points: series(&|p| Some(p.sessions_active)),
        },
        Chart {
            id: "login-failures",
            title: "Login failures per interval",
            unit: Unit::Count,
            points: series(&|p| Some(p.login_failures)),
        },
        Chart {
            id: "image-cache",
            title: "Image cache hit ratio",
            unit: Unit::Percent,
            points: series(&|p| p.image_hit_ratio),
        },
        Chart {
            id: "store-errors",
            title: "Object store errors per interval",
            unit: Unit::Count,
            points: series(&|p| Some(p.store_errors)),
        },
    ];
    let mut out = String::from("<ul class=\"stats\">\n");
    for (label, value, href) in [
        ("Users", totals.users, Some(frame.href("users"))),
        ("Active sessions", totals.sessions_active, None),
        ("Mail waiting", totals.mail_queue, None),
        ("Images waiting", totals.image_queue, None),
    ] {
        let label = match href {
            Some(href) => format!("<a href=\"{}\">{label}</a>", esc(&href)),
            None => label.to_string(),
        };
        let _ = writeln!(out, "<li><strong>{value}</strong>{label}</li>");
    }
    out.push_str("</ul>\n");
    if points.is_empty() {
        out.push_str("<p class=\"hint\">The charts fill in as postern samples its metrics (every 5 seconds).</p>\n");
    }
    out.push_str("<div class=\"charts\">\n");
    for chart in &charts {
        out.push_str(&chart.render());
    }
    out.push_str("</div>\n<p class=\"hint\">The last 15 minutes of this instance, sampled every 5 seconds. Prometheus scrapes the same metrics from the ops listener's <code>/metrics</code>.</p>\n");
    let _ = writeln!(
        out,
        "<p>{}</p>",
        if live {
            format!(
                "Updating every 15 seconds (this keeps your session active). <a href=\"{}\">Stop updating</a>",
                esc(&frame.href(""))
            )
        } else {
            format!(
                "<a href=\"{}\">Keep updating every 15 seconds</a> (keeps your session active while the page is open)",
                esc(&format!("{}?live=1", frame.href("")))
            )
        }
    );
    out
}

/// The users list's filters as the query has them.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub q: String,
    pub status: String,
    pub role: String,
    pub sort: UserSort,
    pub offset: i64,
    pub limit: i64,
}

impl UserQuery {
    pub fn href(&self, frame: &Frame, offset: i64) -> String {
        let offset = offset.to_string();
        let sort = if self.sort == UserSort::default() {
            ""
        } else {
            self.sort.as_str()
        };
        format!(
            "{}{}",
            frame.href("users"),
            query(&[
                ("q", &self.q),
                ("status", &self.status),
                ("role", &self.role),
                ("sort", sort),
                ("offset", if offset == "0" { "" } else { &offset }),
            ])
        )
    }
}

pub fn users(
    frame: &Frame,
    filter: &UserQuery,
    users: &[User],
    total: i64,
    roles: &[RoleInfo],
) -> String {
    let mut out = format!(
        "<p><a href=\"{}\">Create a user</a> · <a href=\"{}\">Import users from a spreadsheet</a></p>\n",
        esc(&frame.href("users/new")),
        esc(&frame.href("import"))
    );
    let _ = write!(
        out,
        "<form method=\"get\" action=\"{}\" class=\"card filters\" role=\"search\">\n<div>{}</div>\n",
        esc(&frame.href("users")),
        input(
            "q",
            "Search",
            "search",
            &filter.q,
            " placeholder=\"name, username or email\""
        )
    );
    let mut statuses = vec![(String::new(), "any".to_string())];
    statuses.extend(STATUSES.map(|s| (s.as_str().to_string(), s.as_str().to_string())));
    let mut role_options = vec![(String::new(), "any".to_string())];
    role_options.extend(roles.iter().map(|r| (r.name.clone(), r.name.clone())));
    let sorts: Vec<(String, String)> = UserSort::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), s.as_str().to_string()))
        .collect();
    let _ = write!(
        out,
        "<div>{}</div>\n<div>{}</div>\n<div>{}</div>\n<div><button type=\"submit\">Filter</button></div>\n</form>\n",
        select("status", "Status", &statuses, &filter.status),
        select("role", "Role", &role_options, &filter.role),
        select("sort", "Sort by", &sorts, filter.sort.as_str()),
    );
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let locked = if u.locked_until.is_some() {
                " (locked)"
            } else {
                ""
            };
            vec![
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&frame.href(&format!("users/{}", segment(&u.id)))),
                    esc(&u.username)
                ),
                esc(&u.email),
                esc(&full_name(u)),
                format!("{}{locked}", status_cell(u.status)),
                role_chips(&u.roles),
                time(u.created_at),
            ]
        })
        .collect();
    out.push_str(&table(
        "users",
        &["Username", "Email", "Name", "Status", "Roles", "Created"],
        &rows,
    ));
    out.push_str(&pager(
        filter.offset,
        filter.limit,
        users.len(),
        Some(total),
        |o| filter.href(frame, o),
    ));
    out
}

/// What the user page shows besides the user.
pub struct UserDetail<'a> {
    pub user: &'a User,
    pub sessions: &'a [SessionRecord],
    pub events: &'a [Event],
    pub roles: &'a [RoleInfo],
    pub mail_on: bool,
    pub now: i64,
    /// The custom-data text to show (what was sent, when it was refused).
    pub custom_data: &'a str,
}

pub fn user(frame: &Frame, csrf: &str, detail: &UserDetail) -> String {
    let u = detail.user;
    let action = frame.href(&format!("users/{}", segment(&u.id)));
    let mut out = String::new();
    let locked = match u.locked_until {
        Some(until) if until > detail.now => format!("until {}", time(until)),
        _ => "no".to_string(),
    };
    let _ = write!(
        out,
        "<section class=\"card\" aria-labelledby=\"profile-h\">\n<h2 id=\"profile-h\">Profile</h2>\n<dl class=\"facts\">\n\
         <dt>Username</dt><dd>{}</dd><dt>Id</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd>\
         <dt>Password</dt><dd>{}</dd><dt>Locked</dt><dd>{locked}</dd><dt>Created</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd>\n</dl>\n",
        esc(&u.username),
        esc(&u.id),
        status_cell(u.status),
        if u.password_hash.is_some() {
            "set"
        } else {
            "not set"
        },
        time(u.created_at),
        time(u.updated_at),
    );
    out.push_str(&form_open(&action, csrf, ""));
    out.push_str(&hidden("action", "profile"));
    out.push_str(&input(
        "email",
        "Email",
        "email",
        &u.email,
        " required autocomplete=\"off\"",
    ));
    out.push_str(&input(
        "given_name",
        "First name",
        "text",
        &u.given_name,
        "",
    ));
    out.push_str(&input("surname", "Last name", "text", &u.surname, ""));
    out.push_str("<button type=\"submit\">Save profile</button>\n</form>\n</section>\n");

    // Status and account actions.
    out.push_str("<section class=\"card\" aria-labelledby=\"account-h\">\n<h2 id=\"account-h\">Account</h2>\n");
    match u.status {
        UserStatus::Enabled => out.push_str(&action_button(
            &action,
            csrf,
            "disable",
            "Disable (ends their sessions)",
            "danger",
            &[],
        )),
        _ => out.push_str(&action_button(&action, csrf, "enable", "Enable", "", &[])),
    }
    if u.locked_until.is_some_and(|t| t > detail.now) {
        out.push_str(&action_button(
            &action,
            csrf,
            "unlock",
            "Unlock",
            "secondary",
            &[],
        ));
    }
    if detail.mail_on {
        out.push_str(&action_button(
            &action,
            csrf,
            "reset_mail",
            "Mail a password-reset link",
            "secondary",
            &[],
        ));
    }
    out.push_str(&form_open(&action, csrf, ""));
    out.push_str(&hidden("action", "set_password"));
    out.push_str(&input(
        "password",
        "Set a new password (ends their sessions)",
        "password",
        "",
        " required autocomplete=\"new-password\"",
    ));
    out.push_str(
        "<button type=\"submit\" class=\"secondary\">Set password</button>\n</form>\n</section>\n",
    );

    // Roles.
    out.push_str(
        "<section class=\"card\" aria-labelledby=\"roles-h\">\n<h2 id=\"roles-h\">Roles</h2>\n",
    );
    if u.roles.is_empty() {
        out.push_str("<p class=\"empty\">No roles.</p>\n");
    }
    for role in &u.roles {
        let _ = write!(out, "<span class=\"role-chip\">{}</span>", esc(role));
        out.push_str(&action_button(
            &action,
            csrf,
            "remove_role",
            &format!("Remove {role}"),
            "link",
            &[("role", role)],
        ));
    }
    let grantable: Vec<(String, String)> = detail
        .roles
        .iter()
        .filter(|r| !u.roles.contains(&r.name))
        .map(|r| (r.name.clone(), r.name.clone()))
        .collect();
    if !grantable.is_empty() {
        out.push_str(&form_open(&action, csrf, "filters"));
        out.push_str(&hidden("action", "add_role"));
        let _ = write!(
            out,
            "<div>{}</div><div><button type=\"submit\">Add role</button></div>\n</form>\n",
            select("role", "Grant a role", &grantable, "")
        );
    }
    out.push_str("</section>\n");

    // Custom data.
    out.push_str("<section class=\"card\" aria-labelledby=\"custom-h\">\n<h2 id=\"custom-h\">Custom data</h2>\n");
    out.push_str(&form_open(&action, csrf, ""));
    out.push_str(&hidden("action", "custom_data"));
    let _ = write!(
        out,
        "<label for=\"f-custom_data\">JSON object</label>\n<textarea id=\"f-custom_data\" name=\"custom_data\" rows=\"8\" spellcheck=\"false\" aria-describedby=\"custom-hint\">{}</textarea>\n\
         <p class=\"hint\" id=\"custom-hint\">Must be a JSON object, e.g. <code>{{\"plan\": \"pro\"}}</code>. Up to 64 KiB.</p>\n\
         <button type=\"submit\">Save custom data</button>\n</form>\n</section>\n",
        esc(detail.custom_data)
    );

    // Sessions.
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"sessions-h\">\n<h2 id=\"sessions-h\">Sessions</h2>"
    );
    let rows: Vec<Vec<String>> = detail
        .sessions
        .iter()
        .map(|s| {
            let handle = s.id_hash.get(..16).unwrap_or(&s.id_hash);
            vec![
                esc(s.user_agent.as_deref().unwrap_or("unknown")),
                esc(s.ip.as_deref().unwrap_or("")),
                time(s.created_at),
                time(s.last_seen_at),
                time(s.idle_expires_at.min(s.absolute_expires_at)),
                action_button(
                    &action,
                    csrf,
                    "revoke_session",
                    "Revoke",
                    "danger",
                    &[("session", handle)],
                ),
            ]
        })
        .collect();
    out.push_str(&table(
        "sessions",
        &["Device", "IP", "Started", "Last seen", "Expires", ""],
        &rows,
    ));
    if !detail.sessions.is_empty() {
        out.push_str(&action_button(
            &action,
            csrf,
            "revoke_all",
            "Revoke all sessions",
            "danger",
            &[],
        ));
    }
    out.push_str("</section>\n");

    // Events.
    let _ = write!(
        out,
        "<section aria-labelledby=\"events-h\">\n<h2 id=\"events-h\">Recent events</h2>\n{}<p><a href=\"{}\">All of this user's events</a></p>\n</section>\n",
        event_table(detail.events),
        esc(&format!(
            "{}{}",
            frame.href("events"),
            query(&[("user", &u.id)])
        ))
    );

    // Delete.
    out.push_str("<section class=\"card\" aria-labelledby=\"delete-h\">\n<h2 id=\"delete-h\">Delete this user</h2>\n<p>Deleting removes the user, their roles and sessions. It cannot be undone.</p>\n");
    out.push_str(&form_open(&action, csrf, ""));
    out.push_str(&hidden("action", "delete"));
    out.push_str(&input(
        "confirm",
        &format!("Type the username ({}) to confirm", u.username),
        "text",
        "",
        " required autocomplete=\"off\"",
    ));
    out.push_str(
        "<button type=\"submit\" class=\"danger\">Delete user</button>\n</form>\n</section>\n",
    );
    out
}

/// The create-user form's values (kept when the form comes back with a problem).
#[derive(Debug, Clone, Default)]
pub struct NewUserForm {
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub surname: String,
    pub roles: Vec<String>,
    pub send_verification: bool,
    pub send_welcome: bool,
}

pub fn new_user(
    frame: &Frame,
    csrf: &str,
    form: &NewUserForm,
    roles: &[RoleInfo],
    mail_on: bool,
) -> String {
    let mut out = form_open(&frame.href("users/new"), csrf, "card");
    out.push_str(&input(
        "username",
        "Username",
        "text",
        &form.username,
        " required autocomplete=\"off\" autocapitalize=\"none\" spellcheck=\"false\"",
    ));
    out.push_str(&input(
        "email",
        "Email",
        "email",
        &form.email,
        " required autocomplete=\"off\"",
    ));
    out.push_str(&input(
        "given_name",
        "First name",
        "text",
        &form.given_name,
        "",
    ));
    out.push_str(&input("surname", "Last name", "text", &form.surname, ""));
    out.push_str(&input(
        "password",
        "Password (leave blank to let the user choose one from a mailed link)",
        "password",
        "",
        " autocomplete=\"new-password\"",
    ));
    if !roles.is_empty() {
        out.push_str("<fieldset><legend>Roles</legend>\n");
        for role in roles {
            let checked = if form.roles.contains(&role.name) {
                " checked"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "<label class=\"check\"><input type=\"checkbox\" name=\"roles\" value=\"{0}\"{checked}> {0}</label>",
                esc(&role.name)
            );
        }
        out.push_str("</fieldset>\n");
    }
    if mail_on {
        for (name, label, on) in [
            (
                "send_verification",
                "Send a verification mail (the user starts unverified; the link also sets a first password)",
                form.send_verification,
            ),
            ("send_welcome", "Send the welcome mail", form.send_welcome),
        ] {
            let _ = writeln!(
                out,
                "<label class=\"check\"><input type=\"checkbox\" name=\"{name}\" value=\"true\"{}> {label}</label>",
                if on { " checked" } else { "" }
            );
        }
    } else {
        out.push_str("<p class=\"hint\">Mail is off: users without a password need one set here or later.</p>\n");
    }
    out.push_str("<button type=\"submit\">Create user</button>\n</form>\n");
    out
}

pub fn roles(frame: &Frame, csrf: &str, roles: &[RoleInfo]) -> String {
    let action = frame.href("roles");
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            let holders = format!(
                "<a href=\"{}\">{}</a>",
                esc(&format!("{}{}", frame.href("users"), query(&[("role", &r.name)]))),
                r.users
            );
            let mut delete = form_open(&action, csrf, "inline");
            delete.push_str(&hidden("action", "delete"));
            delete.push_str(&hidden("role", &r.name));
            if r.users > 0 {
                let _ = write!(
                    delete,
                    "<label class=\"check\"><input type=\"checkbox\" name=\"force\" value=\"true\" required> also take it from {} user(s)</label>",
                    r.users
                );
            }
            let _ = write!(
                delete,
                "<button type=\"submit\" class=\"danger\" aria-label=\"Delete role {0}\">Delete</button></form>",
                esc(&r.name)
            );
            vec![
                esc(&r.name),
                esc(&r.description),
                holders,
                time(r.created_at),
                delete,
            ]
        })
        .collect();
    let mut out = table(
        "roles",
        &["Role", "Description", "Users", "Created", ""],
        &rows,
    );
    out.push_str("<h2>Create a role</h2>\n");
    out.push_str(&form_open(&action, csrf, "card"));
    out.push_str(&hidden("action", "create"));
    out.push_str(&input(
        "name",
        "Name",
        "text",
        "",
        " required pattern=\"[A-Za-z0-9._:\\-]{1,64}\" autocomplete=\"off\"",
    ));
    out.push_str(&input("description", "Description", "text", "", ""));
    out.push_str("<button type=\"submit\">Create role</button>\n</form>\n");
    out
}

fn event_table(events: &[Event]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let detail = if e.detail.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                format!("<code>{}</code>", esc(&e.detail.to_string()))
            };
            vec![
                time(e.created_at),
                esc(&e.kind),
                esc(e.user_id.as_deref().unwrap_or("")),
                esc(e.actor.as_deref().unwrap_or("")),
                esc(e.ip.as_deref().unwrap_or("")),
                detail,
            ]
        })
        .collect();
    table(
        "events",
        &["Time", "Kind", "User", "Actor", "IP", "Detail"],
        &rows,
    )
}

/// The events list's filters as the query has them.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub user: String,
    pub kind: String,
    pub since: String,
    pub until: String,
    pub offset: i64,
    pub limit: i64,
}

impl EventQuery {
    pub fn href(&self, frame: &Frame, offset: i64) -> String {
        let offset = offset.to_string();
        format!(
            "{}{}",
            frame.href("events"),
            query(&[
                ("user", &self.user),
                ("kind", &self.kind),
                ("since", &self.since),
                ("until", &self.until),
                ("offset", if offset == "0" { "" } else { &offset }),
            ])
        )
    }
}

pub fn events(frame: &Frame, filter: &EventQuery, events: &[Event]) -> String {
    let mut out = format!(
        "<form method=\"get\" action=\"{}\" class=\"card filters\" role=\"search\">\n",
        esc(&frame.href("events"))
    );
    for (name, label, kind, value, extra) in [
        (
            "user",
            "User (username, email or id)",
            "text",
            &filter.user,
            "",
        ),
        (
            "kind",
            "Kind",
            "text",
            &filter.kind,
            " placeholder=\"login.failure\"",
        ),
        ("since", "Since (UTC)", "datetime-local", &filter.since, ""),
        ("until", "Until (UTC)", "datetime-local", &filter.until, ""),
    ] {
        let _ = writeln!(out, "<div>{}</div>", input(name, label, kind, value, extra));
    }
    out.push_str("<div><button type=\"submit\">Filter</button></div>\n</form>\n");
    out.push_str(&event_table(events));
    out.push_str(&pager(
        filter.offset,
        filter.limit,
        events.len(),
        None,
        |o| filter.href(frame, o),
    ));
    out
}

/// The files list's filters.
#[derive(Debug, Clone, Default)]
pub struct FileQuery {
    pub user: String,
    pub entity_type: String,
    pub entity_id: String,
    pub offset: i64,
    pub limit: i64,
}

impl FileQuery {
    pub fn href(&self, frame: &Frame, offset: i64) -> String {
        let offset = offset.to_string();
        format!(
            "{}{}",
            frame.href("files"),
            query(&[
                ("user", &self.user),
                ("entity_type", &self.entity_type),
                ("entity_id", &self.entity_id),
                ("offset", if offset == "0" { "" } else { &offset }),
            ])
        )
    }
}

/// A file row: the record, its owner's username, and its thumbnail URL (images with a
/// transform route over their store).
pub struct FileRow<'a> {
    pub record: &'a FileRecord,
    pub owner: Option<&'a str>,
    pub thumbnail: Option<String>,
}

pub fn files(
    frame: &Frame,
    csrf: &str,
    filter: &FileQuery,
    rows: &[FileRow],
    total: i64,
) -> String {
    let action = frame.href("files");
    let mut out = format!(
        "<form method=\"get\" action=\"{}\" class=\"card filters\" role=\"search\">\n",
        esc(&action)
    );
    for (name, label, value) in [
        ("user", "Owner (username, email or id)", &filter.user),
        ("entity_type", "Entity type", &filter.entity_type),
        ("entity_id", "Entity id", &filter.entity_id),
    ] {
        let _ = writeln!(out, "<div>{}</div>", input(name, label, "text", value, ""));
    }
    out.push_str("<div><button type=\"submit\">Filter</button></div>\n</form>\n");
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let r = row.record;
            let thumb = match &row.thumbnail {
                Some(src) => format!(
                    "<img class=\"thumb\" src=\"{}\" alt=\"{}\" loading=\"lazy\" width=\"64\" height=\"64\">",
                    esc(src),
                    esc(r.alt.as_deref().unwrap_or(&r.name))
                ),
                None => String::new(),
            };
            let entity = match (&r.entity_type, &r.entity_id) {
                (Some(t), Some(id)) => esc(&format!("{t}/{id}")),
                _ => String::new(),
            };
            vec![
                thumb,
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&frame.href(&format!("files/{}", segment(&r.id)))),
                    esc(&r.name)
                ),
                esc(row.owner.unwrap_or(&r.owner_id)),
                esc(&r.content_type),
                size(r.size),
                entity,
                time(r.created_at),
                action_button(&action, csrf, "delete", "Delete", "danger", &[("id", &r.id)]),
            ]
        })
        .collect();
    out.push_str(&table(
        "files",
        &[
            "", "Name", "Owner", "Type", "Size", "Entity", "Uploaded", "",
        ],
        &table_rows,
    ));
    out.push_str(&pager(
        filter.offset,
        filter.limit,
        rows.len(),
        Some(total),
        |o| filter.href(frame, o),
    ));
    out.push_str("<h2>Sync</h2>\n<p class=\"hint\">Reads the stores back into records: objects added behind postern's back are adopted, records whose objects are gone are dropped.</p>\n");
    out.push_str(&action_button(
        &action,
        csrf,
        "sync",
        "Sync every user's files",
        "secondary",
        &[],
    ));
    out
}

pub fn file(frame: &Frame, csrf: &str, row: &FileRow, link: Option<&str>) -> String {
    let r = row.record;
    let action = frame.href(&format!("files/{}", segment(&r.id)));
    let mut out = String::from("<section class=\"card\">\n");
    if let Some(src) = &row.thumbnail {
        let _ = writeln!(
            out,
            "<img class=\"thumb\" src=\"{}\" alt=\"{}\" width=\"64\" height=\"64\">",
            esc(src),
            esc(r.alt.as_deref().unwrap_or(&r.name))
        );
    }
    let _ = write!(
        out,
        "<dl class=\"facts\">\n<dt>Name</dt><dd>{}</dd><dt>Owner</dt><dd>{}</dd><dt>Type</dt><dd>{}</dd><dt>Size</dt><dd>{}</dd>\
         <dt>Route</dt><dd>{}</dd><dt>Store</dt><dd>{}</dd><dt>Key</dt><dd>{}</dd><dt>Uploaded</dt><dd>{}</dd>\n</dl>\n",
        esc(&r.name),
        esc(row.owner.unwrap_or(&r.owner_id)),
        esc(&r.content_type),
        size(r.size),
        esc(&r.route),
        esc(&r.store),
        esc(&r.key),
        time(r.created_at),
    );
    if let Some(link) = link {
        let _ = writeln!(
            out,
            "<p><a href=\"{}\" rel=\"noreferrer\">Open the file</a> (a link valid for an hour)</p>",
            esc(link)
        );
    }
    out.push_str("</section>\n");
    out.push_str(&form_open(&action, csrf, "card"));
    out.push_str(&hidden("action", "update"));
    out.push_str(&input(
        "alt",
        "Alt text",
        "text",
        r.alt.as_deref().unwrap_or(""),
        "",
    ));
    out.push_str(&input(
        "entity_type",
        "Entity type",
        "text",
        r.entity_type.as_deref().unwrap_or(""),
        "",
    ));
    out.push_str(&input(
        "entity_id",
        "Entity id",
        "text",
        r.entity_id.as_deref().unwrap_or(""),
        "",
    ));
    out.push_str("<p class=\"hint\">Leave both entity fields empty to detach the file.</p>\n<button type=\"submit\">Save</button>\n</form>\n");
    out.push_str(&action_button(
        &frame.href("files"),
        csrf,
        "delete",
        "Delete this file",
        "danger",
        &[("id", &r.id)],
    ));
    out
}

fn import_options(options: &ImportOptions) -> String {
    [
        ("create_roles", "Create roles that do not exist yet", options.create_roles),
        (
            "all_or_nothing",
            "Import nothing if any row has a problem",
            options.all_or_nothing,
        ),
    ]
    .iter()
    .map(|(name, label, on)| {
        format!(
            "<label class=\"check\"><input type=\"checkbox\" name=\"{name}\" value=\"true\"{}> {label}</label>\n",
            if *on { " checked" } else { "" }
        )
    })
    .collect()
}

pub fn import_form(frame: &Frame, csrf: &str, options: &ImportOptions, mail_on: bool) -> String {
    let mut out = format!(
        "<p>A CSV or XLSX file with the columns <strong>First Name, Last Name, Email, Role, Password</strong> (role and password may be blank; several roles separated by <code>;</code>). The email becomes the username. Roles must exist unless you tick “Create roles”. Examples: <a href=\"{}\" download>CSV</a>, <a href=\"{}\" download>XLSX</a>.</p>\n",
        esc(&frame.href("import-example.csv")),
        esc(&frame.href("import-example.xlsx"))
    );
    out.push_str(if mail_on {
        "<p class=\"hint\">Users without a password are sent an invitation to choose one.</p>\n"
    } else {
        "<p class=\"hint\">Mail is off: users without a password cannot sign in until one is set for them.</p>\n"
    });
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{}\" enctype=\"multipart/form-data\" class=\"card\">\n{}\
         <label for=\"f-file\">Spreadsheet</label>\n<input id=\"f-file\" name=\"file\" type=\"file\" required accept=\".csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\">\n{}\
         <button type=\"submit\">Check the file</button>\n<p class=\"hint\">Nothing is written until you confirm on the next page.</p>\n</form>\n",
        esc(&frame.href("import")),
        hidden("csrf", csrf),
        import_options(options),
    );
    out
}

fn report_table(report: &ImportReport) -> String {
    let mut out = String::from(
        "<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"rows\">\n<table>\n<caption>Rows</caption>\n<thead><tr><th scope=\"col\">Line</th><th scope=\"col\">Email</th><th scope=\"col\">Name</th><th scope=\"col\">Roles</th><th scope=\"col\">Password</th><th scope=\"col\">Result</th></tr></thead>\n<tbody>\n",
    );
    for row in &report.rows {
        let refused = !row.problems.is_empty();
        let result = if refused {
            format!(
                "<td class=\"problems\">{}</td>",
                esc(&row.problems.join("; "))
            )
        } else if row.user_id.is_some() {
            format!(
                "<td>imported{}</td>",
                if row.invited { ", invited" } else { "" }
            )
        } else {
            "<td>ok</td>".to_string()
        };
        let _ = writeln!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{result}</tr>",
            if refused { " class=\"refused\"" } else { "" },
            row.line,
            esc(&row.email),
            esc(&row.name),
            role_chips(&row.roles),
            if row.has_password { "given" } else { "none" },
        );
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

pub fn import_preview(frame: &Frame, csrf: &str, report: &ImportReport, import_id: &str) -> String {
    let refused = report.refused();
    let valid = report.valid();
    let mut out = format!(
        "<p role=\"status\"><strong>{valid}</strong> row(s) can be imported, <strong>{refused}</strong> have problems.</p>\n"
    );
    let admins = report
        .rows
        .iter()
        .filter(|r| {
            r.problems.is_empty() && r.roles.iter().any(|role| role == crate::auth::ADMIN_ROLE)
        })
        .count();
    if admins > 0 {
        let _ = writeln!(
            out,
            "<p class=\"error\">{admins} of these row(s) grant the <strong>admin</strong> role: those users will be able to do everything you can.</p>"
        );
    }
    out.push_str(&report_table(report));
    let blocked = report.options.all_or_nothing && refused > 0;
    if blocked {
        out.push_str("<p class=\"error\">With “import nothing if any row has a problem”, fix the rows above and check the file again.</p>\n");
    } else if valid > 0 {
        out.push_str(&form_open(&frame.href("import"), csrf, "card"));
        out.push_str(&hidden("action", "import"));
        out.push_str(&hidden("import", import_id));
        let _ = writeln!(
            out,
            "<button type=\"submit\">Import {valid} user(s)</button>\n</form>"
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"hint\">The checked rows wait on the server for 15 minutes; nothing is written until you import.</p>\n<p><a href=\"{}\">Check another file</a></p>",
        esc(&frame.href("import"))
    );
    out
}

pub fn import_done(frame: &Frame, report: &ImportReport) -> String {
    let mut out = format!(
        "<p class=\"notice\" role=\"status\">Imported {} user(s); {} row(s) refused.{}</p>\n",
        report.imported,
        report.refused(),
        if report.created_roles.is_empty() {
            String::new()
        } else {
            format!(" Created roles: {}.", esc(&report.created_roles.join(", ")))
        }
    );
    if report.uninvited > 0 {
        let _ = writeln!(
            out,
            "<p class=\"error\">{} user(s) have no password and no invitation: set one on their page.</p>",
            report.uninvited
        );
    }
    out.push_str(&report_table(report));
    let _ = writeln!(
        out,
        "<p><a href=\"{}\">See the users</a> · <a href=\"{}\">Import another file</a></p>",
        esc(&frame.href("users")),
        esc(&frame.href("import"))
    );
    out
}

/// A page that only explains a problem.
pub fn problem(text: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>\n", esc(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame<'static> {
        Frame {
            console: "/_postern/console",
            admin: "root",
            files: true,
            refresh: None,
        }
    }

    fn user(name: &str) -> User {
        User {
            id: format!("id-{name}"),
            username: name.to_string(),
            email: format!("{name}@example.com"),
            given_name: "<Given>".into(),
            surname: "Name".into(),
            status: UserStatus::Enabled,
            password_hash: Some("hash".into()),
            password_changed_at: None,
            custom_data: "{}".into(),
            session_epoch: 0,
            locked_until: None,
            created_at: 0,
            updated_at: 0,
            roles: vec!["staff".into()],
        }
    }

    #[test]
    fn the_users_page_escapes_keeps_filters_in_paging_and_links_each_user() {
        let filter = UserQuery {
            q: "a&b".into(),
            status: "enabled".into(),
            limit: 1,
            ..UserQuery::default()
        };
        let page = users(&frame(), &filter, &[user("ann")], 3, &[]);
        assert!(page.contains("href=\"/_postern/console/users/id-ann\""));
        assert!(page.contains("&lt;Given&gt; Name"));
        assert!(
            page.contains(
                "href=\"/_postern/console/users?q=a%26b&amp;status=enabled&amp;offset=1\""
            )
        );
        assert!(page.contains("1–1 of 3"));
        assert!(!page.contains("hash"), "never the password hash");
    }

    #[test]
    fn every_user_page_form_carries_the_csrf_token() {
        let u = user("bob");
        let sessions = vec![SessionRecord {
            id_hash: "0123456789abcdef0123".into(),
            user_id: u.id.clone(),
            epoch: 0,
            created_at: 0,
            last_seen_at: 0,
            idle_expires_at: 10,
            absolute_expires_at: 20,
            ip: Some("192.0.2.1".into()),
            user_agent: Some("Firefox".into()),
            purpose: "browser".into(),
        }];
        let detail = UserDetail {
            user: &u,
            sessions: &sessions,
            events: &[],
            roles: &[],
            mail_on: true,
            now: 0,
            custom_data: "{\"a\":\"<x>\"}",
        };
        let page = super::user(&frame(), "TOKEN", &detail);
        let forms = page.matches("<form method=\"post\"").count();
        assert!(forms >= 9, "{forms}");
        assert_eq!(page.matches("name=\"csrf\" value=\"TOKEN\"").count(), forms);
        assert!(
            page.contains("value=\"0123456789abcdef\""),
            "the session handle, not the id hash"
        );
        assert!(!page.contains("0123456789abcdef0123"));
        assert!(page.contains("{&quot;a&quot;:&quot;&lt;x&gt;&quot;}"));
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(10), "10 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }
}
