//! `postern migrate`, `postern user …`, `postern role …` and `postern events`: the same database
//! as the server, from a shell.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::{EXIT_CONFIG, EXIT_RUNTIME, report_config_error};
use crate::accounts::import::{self, ImportError, ImportOptions, ImportReport};
use crate::accounts::{AccountError, Accounts, Actor, LifecycleError, Origin, UserDraft};
use crate::auth::Passwords;
use crate::config::{self, ConfigSource, Settings};
use crate::store::{Store, StoreError, User, UserStatus};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (enabled).
    Add {
        name: String,
        #[arg(long)]
        email: String,
        /// Role to grant; repeat for several.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        #[arg(long)]
        given_name: Option<String>,
        #[arg(long)]
        surname: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Create the user unverified and queue a verification mail (the link also lets a user
        /// without a password choose one).
        #[arg(long)]
        send_verification: bool,
        /// Queue the welcome mail.
        #[arg(long)]
        send_welcome: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one user (by username or email).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password from standard input; ends the user's sessions.
    SetPassword {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Grant a role (created if it does not exist).
    AddRole { name: String, role: String },
    /// Take a role away.
    RemoveRole { name: String, role: String },
    /// Lift a brute-force lockout.
    Unlock { name: String },
    /// Disable a user; ends the user's sessions.
    Disable { name: String },
    /// Enable a disabled or unverified user.
    Enable { name: String },
    /// Delete a user and everything that belongs to it.
    Delete { name: String },
    /// End every session of a user, on every instance.
    RevokeSessions { name: String },
    /// Queue a mail with a password-reset link for the user (sent by the running server).
    ResetPassword { name: String },
    /// Import users from a CSV or XLSX file with the columns First Name, Last Name, Email,
    /// Role, Password (role and password may be blank; the email is the username). Valid rows
    /// are created in one transaction; users without a password are mailed an invitation when
    /// mail is on. Exits 1 when a row was refused.
    Import {
        file: std::path::PathBuf,
        /// Check every row and report; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import nothing when any row has a problem.
        #[arg(long)]
        all_or_nothing: bool,
        /// Create roles the file names that do not exist (else such rows are refused).
        #[arg(long)]
        create_roles: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// List roles and how many users hold each.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a role.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a role; refused while users hold it unless --force.
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
    },
}

pub struct EventQuery {
    pub user: Option<String>,
    pub kind: Option<String>,
    pub since: Option<String>,
    pub limit: i64,
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum CommandError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Password(#[from] crate::auth::PasswordError),
    #[error("{0}")]
    Account(#[from] AccountError),
    #[error("{0}")]
    Lifecycle(#[from] LifecycleError),
    #[error("{0}")]
    Setup(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Import(#[from] ImportError),
    #[error("{0}")]
    Refused(String),
}

impl CommandError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_)
            | Self::Store(StoreError::Invalid(_))
            | Self::Account(AccountError::Store(StoreError::Invalid(_)))
            | Self::Account(AccountError::Policy(_))
            | Self::Lifecycle(LifecycleError::MailDisabled)
            | Self::Import(
                ImportError::Unreadable { .. }
                | ImportError::Empty
                | ImportError::TooManyRows
                | ImportError::TooLarge
                | ImportError::MissingColumn(_),
            ) => EXIT_CONFIG,
            _ => EXIT_RUNTIME,
        }
    }
}

fn print_import(report: &ImportReport) {
    for row in report.rows.iter().filter(|r| !r.problems.is_empty()) {
        println!(
            "line {}: {}: {}",
            row.line,
            if row.email.is_empty() {
                "(no email)"
            } else {
                &row.email
            },
            row.problems.join("; ")
        );
    }
    let refused = report.refused();
    if report.options.dry_run {
        println!(
            "dry run: {} row(s) would be imported, {refused} refused; nothing was written",
            report.valid()
        );
    } else if report.options.all_or_nothing && refused > 0 {
        println!("{refused} row(s) refused: nothing was imported (--all-or-nothing)");
    } else {
        println!(
            "imported {} user(s), {refused} row(s) refused",
            report.imported
        );
    }
    if !report.created_roles.is_empty() {
        println!("created roles: {}", report.created_roles.join(", "));
    }
    let invited = report.rows.iter().filter(|r| r.invited).count();
    if invited > 0 {
        println!("invitations queued: {invited}");
    }
    if report.uninvited > 0 {
        println!(
            "{} user(s) have no password and no invitation (mail is off): set one with `postern user set-password NAME --password-stdin`",
            report.uninvited
        );
    }
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// Loads the config and runs `work` with an open (migrated) store on a small runtime.
pub(super) fn with_store<F, Fut>(config_path: Option<&Path>, work: F) -> ExitCode
where
    F: FnOnce(Settings, Store) -> Fut,
    Fut: std::future::Future<Output = Result<(), CommandError>>,
{
    let settings = match config::load(&ConfigSource::locate(config_path)) {
        Ok(settings) => settings,
        Err(err) => {
            report_config_error(&err);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postern: cannot start a runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(async {
        if let Some(parent) = crate::store::sqlite_parent(&settings.database.url) {
            std::fs::create_dir_all(&parent).map_err(|e| {
                CommandError::Usage(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let store = Store::open(&settings.database.url, 2).await?;
        let outcome = work(settings, store.clone()).await;
        store.close().await;
        outcome
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("postern: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

pub fn migrate(config_path: Option<&Path>) -> ExitCode {
    with_store(config_path, |_, _| async {
        println!("database is up to date");
        Ok(())
    })
}

pub fn run(config_path: Option<&Path>, command: UserCommand) -> ExitCode {
    with_store(config_path, |settings, store| {
        execute(settings, store, command)
    })
}

fn read_password() -> Result<String, CommandError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| {
        CommandError::Usage(format!("cannot read the password from standard input: {e}"))
    })?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub(super) async fn find(store: &Store, name: &str) -> Result<User, CommandError> {
    store
        .user_by_login(name)
        .await?
        .ok_or_else(|| CommandError::NoSuchUser(name.to_string()))
}

/// The account service as the command line uses it: the shell user is the actor.
fn cli_accounts<'a>(
    store: &'a Store,
    passwords: &'a Passwords,
    settings: &'a Settings,
) -> Accounts<'a> {
    Accounts {
        store,
        passwords,
        policy: &settings.passwords.policy,
        actor: Actor {
            name: actor(),
            ip: None,
        },
        now: now(),
    }
}

/// The account workflow as the command line uses it: it queues mail for the server to send.
fn cli_lifecycle(
    settings: &Settings,
    store: &Store,
    passwords: &Passwords,
) -> Result<std::sync::Arc<crate::accounts::Lifecycle>, CommandError> {
    let handle: crate::services::StoreHandle = std::sync::Arc::new(arc_swap::ArcSwapOption::from(
        Some(std::sync::Arc::new(store.clone())),
    ));
    let metrics = crate::metrics::Metrics::new().map_err(|e| CommandError::Setup(e.to_string()))?;
    crate::server::build_lifecycle(
        settings,
        passwords.clone(),
        handle,
        std::sync::Arc::new(crate::auth::SystemClock),
        std::sync::Arc::new(metrics),
    )
    .map_err(|e| CommandError::Setup(e.to_string()))
}

async fn execute(
    settings: Settings,
    store: Store,
    command: UserCommand,
) -> Result<(), CommandError> {
    let passwords = Passwords::new(settings.passwords.hash, 1)?;
    let accounts = cli_accounts(&store, &passwords, &settings);
    match command {
        UserCommand::Add {
            name,
            email,
            roles,
            given_name,
            surname,
            password_stdin,
            send_verification,
            send_welcome,
        } => {
            let lifecycle = if send_verification || send_welcome {
                let lifecycle = cli_lifecycle(&settings, &store, &passwords)?;
                if !lifecycle.mail_on() {
                    return Err(LifecycleError::MailDisabled.into());
                }
                Some(lifecycle)
            } else {
                None
            };
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let draft = UserDraft {
                username: name,
                email,
                given_name: given_name.unwrap_or_default(),
                surname: surname.unwrap_or_default(),
                status: Some(if send_verification {
                    UserStatus::Unverified
                } else {
                    UserStatus::Enabled
                }),
                password,
                roles,
            };
            let user = accounts.create_user(draft).await?;
            println!("created user {} ({})", user.username, user.id);
            if let Some(lifecycle) = &lifecycle {
                if send_verification {
                    lifecycle.send_verification(&store, &user).await?;
                    println!("verification mail queued for {}", user.email);
                }
                if send_welcome {
                    lifecycle.send_welcome(&store, &user).await;
                    println!("welcome mail queued for {}", user.email);
                }
            } else if user.password_hash.is_none() {
                println!(
                    "no password set: use `postern user set-password {} --password-stdin`",
                    user.username
                );
            }
        }
        UserCommand::Import {
            file,
            dry_run,
            all_or_nothing,
            create_roles,
            json,
        } => {
            let too_large = std::fs::metadata(&file)
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", file.display())))?
                .len()
                > import::MAX_IMPORT_BYTES as u64;
            if too_large {
                return Err(ImportError::TooLarge.into());
            }
            let bytes = std::fs::read(&file)
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let rows = import::parse_sheet(&bytes)?;
            let lifecycle = cli_lifecycle(&settings, &store, &passwords)?;
            let options = ImportOptions {
                dry_run,
                all_or_nothing,
                create_roles,
            };
            let report = accounts
                .import_users(rows, options, Some(&lifecycle))
                .await?;
            if json {
                println!("{}", report.to_json());
            } else {
                print_import(&report);
            }
            if report.refused() > 0 {
                return Err(CommandError::Refused(format!(
                    "{} of {} row(s) refused",
                    report.refused(),
                    report.rows.len()
                )));
            }
        }
        UserCommand::List {
            json,
            limit,
            offset,
        } => {
            if !(1..=1000).contains(&limit) || offset < 0 {
                return Err(CommandError::Usage(
                    "--limit must be 1-1000 and --offset >= 0".into(),
                ));
            }
            let users = store.list_users(limit, offset).await?;
            if json {
                let list: Vec<_> = users.iter().map(User::public_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                println!("{:<24} {:<32} {:<10} ROLES", "USERNAME", "EMAIL", "STATUS");
                for u in &users {
                    println!(
                        "{:<24} {:<32} {:<10} {}",
                        u.username,
                        u.email,
                        u.status.as_str(),
                        u.roles.join(",")
                    );
                }
            }
        }
        UserCommand::Show { name, json } => {
            let user = find(&store, &name).await?;
            if json {
                println!("{}", user.public_json());
            } else {
                let locked = match user.locked_until {
                    Some(t) if t > now() => format!("until {t} (unix time)"),
                    _ => "no".to_string(),
                };
                println!("id:        {}", user.id);
                println!("username:  {}", user.username);
                println!("email:     {}", user.email);
                println!("name:      {} {}", user.given_name, user.surname);
                println!("status:    {}", user.status.as_str());
                println!("roles:     {}", user.roles.join(", "));
                println!(
                    "password:  {}",
                    if user.password_hash.is_some() {
                        "set"
                    } else {
                        "not set"
                    }
                );
                println!("locked:    {locked}");
            }
        }
        UserCommand::SetPassword { name, .. } => {
            let user = find(&store, &name).await?;
            accounts.set_password(&user, read_password()?).await?;
            println!(
                "password of {} changed; their sessions have ended",
                user.username
            );
        }
        UserCommand::AddRole { name, role } => {
            let user = find(&store, &name).await?;
            if accounts.add_role(&user.id, &role).await? {
                println!("{} now has role {role}", user.username);
            } else {
                println!("{} already has role {role}", user.username);
            }
        }
        UserCommand::RemoveRole { name, role } => {
            let user = find(&store, &name).await?;
            if accounts.remove_role(&user.id, &role).await? {
                println!("{} no longer has role {role}", user.username);
            } else {
                println!("{} did not have role {role}", user.username);
            }
        }
        UserCommand::Unlock { name } => {
            let user = find(&store, &name).await?;
            accounts.unlock(&user.id).await?;
            println!("{} unlocked", user.username);
        }
        UserCommand::Disable { name } => {
            let user = find(&store, &name).await?;
            accounts.set_status(&user.id, UserStatus::Disabled).await?;
            println!("{} disabled; their sessions have ended", user.username);
        }
        UserCommand::Enable { name } => {
            let user = find(&store, &name).await?;
            accounts.set_status(&user.id, UserStatus::Enabled).await?;
            println!("{} enabled", user.username);
        }
        UserCommand::Delete { name } => {
            let user = find(&store, &name).await?;
            accounts.delete_user(&user).await?;
            println!("{} deleted", user.username);
        }
        UserCommand::RevokeSessions { name } => {
            let user = find(&store, &name).await?;
            let ended = accounts.revoke_sessions(&user.id).await?;
            println!("{ended} session(s) of {} ended", user.username);
        }
        UserCommand::ResetPassword { name } => {
            let user = find(&store, &name).await?;
            let lifecycle = cli_lifecycle(&settings, &store, &passwords)?;
            let origin = Origin {
                actor: Some(actor()),
                ..Origin::default()
            };
            lifecycle.admin_reset(&user, &origin).await?;
            println!(
                "password-reset mail queued for {} (the running server sends it; see `postern mail list`)",
                user.email
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum MailCommand {
    /// Show the mail queue, newest first (never message bodies).
    List {
        /// Only messages that failed every attempt.
        #[arg(long)]
        failed: bool,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Put a failed message back in the queue for a fresh round of attempts.
    Retry { id: i64 },
}

pub fn run_mail(config_path: Option<&Path>, command: MailCommand) -> ExitCode {
    with_store(config_path, |_, store| async move {
        match command {
            MailCommand::List {
                failed,
                limit,
                json,
            } => {
                if !(1..=1000).contains(&limit) {
                    return Err(CommandError::Usage("--limit must be 1-1000".into()));
                }
                let records = store.mail_records(failed, limit).await?;
                if json {
                    let list: Vec<_> = records
                        .iter()
                        .map(|m| {
                            json!({
                                "id": m.id, "kind": m.kind, "user_id": m.user_id,
                                "recipient": m.recipient, "subject": m.subject,
                                "status": m.status, "attempts": m.attempts,
                                "next_attempt_at": m.next_attempt_at, "last_error": m.last_error,
                                "created_at": m.created_at, "sent_at": m.sent_at,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(list));
                } else {
                    println!(
                        "{:<6} {:<8} {:<22} {:<8} {:<32} LAST ERROR",
                        "ID", "STATUS", "KIND", "ATTEMPTS", "TO"
                    );
                    for m in &records {
                        println!(
                            "{:<6} {:<8} {:<22} {:<8} {:<32} {}",
                            m.id,
                            m.status,
                            m.kind,
                            m.attempts,
                            m.recipient,
                            m.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
                Ok(())
            }
            MailCommand::Retry { id } => {
                store.retry_mail(id, now()).await?;
                println!("message {id} queued again");
                Ok(())
            }
        }
    })
}

pub fn run_role(config_path: Option<&Path>, command: RoleCommand) -> ExitCode {
    with_store(config_path, |settings, store| async move {
        let passwords = Passwords::new(settings.passwords.hash, 1)?;
        let accounts = cli_accounts(&store, &passwords, &settings);
        match command {
            RoleCommand::List { json } => {
                let roles = store.roles().await?;
                if json {
                    let list: Vec<_> = roles
                        .iter()
                        .map(|r| json!({"name": r.name, "description": r.description, "users": r.users}))
                        .collect();
                    println!("{}", serde_json::Value::Array(list));
                } else {
                    println!("{:<24} {:>6}  DESCRIPTION", "ROLE", "USERS");
                    for r in &roles {
                        println!("{:<24} {:>6}  {}", r.name, r.users, r.description);
                    }
                }
            }
            RoleCommand::Add { name, description } => {
                accounts.create_role(&name, &description).await?;
                println!("role {name} created");
            }
            RoleCommand::Remove { name, force } => {
                accounts.delete_role(&name, force).await?;
                println!("role {name} deleted");
            }
        }
        Ok(())
    })
}

/// `--since`: a duration back from now ("90m", "7d") or an RFC 3339 time.
fn parse_since(text: &str, now: i64) -> Result<i64, CommandError> {
    if let Ok(ago) = crate::config::parse_duration(text) {
        return Ok(now - ago.as_secs() as i64);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| CommandError::Usage(format!("--since {text:?}: use a duration such as 1h or 7d, or a time such as 2026-11-01T00:00:00Z")))
}

pub fn events(config_path: Option<&Path>, query: EventQuery) -> ExitCode {
    with_store(config_path, |_, store| async move {
        if !(1..=1000).contains(&query.limit) {
            return Err(CommandError::Usage("--limit must be 1-1000".into()));
        }
        let user_id = match &query.user {
            Some(name) => Some(find(&store, name).await?.id),
            None => None,
        };
        let since = query
            .since
            .as_deref()
            .map(|s| parse_since(s, now()))
            .transpose()?;
        let filter = crate::store::EventFilter {
            user_id,
            kind: query.kind.clone(),
            since,
            until: None,
            limit: query.limit,
            offset: 0,
        };
        let events = store.events(&filter).await?;
        if query.json {
            let list: Vec<_> = events
                .iter()
                .map(|e| {
                    json!({"id": e.id, "kind": e.kind, "user_id": e.user_id, "actor": e.actor,
                           "ip": e.ip, "user_agent": e.user_agent, "detail": e.detail, "time": e.created_at})
                })
                .collect();
            println!("{}", serde_json::Value::Array(list));
        } else {
            println!(
                "{:<20} {:<24} {:<36} {:<16} DETAIL",
                "TIME", "KIND", "USER", "IP"
            );
            for e in &events {
                let time = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(e.created_at.max(0) as u64),
                );
                println!(
                    "{:<20} {:<24} {:<36} {:<16} {}",
                    time.to_string().trim_end_matches('Z'),
                    e.kind,
                    e.user_id.as_deref().unwrap_or("-"),
                    e.ip.as_deref().unwrap_or("-"),
                    e.detail
                );
            }
        }
        Ok(())
    })
}
