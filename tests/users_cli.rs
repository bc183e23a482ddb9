//! `postern migrate` and `postern user …` against the test database (SQLite, or PostgreSQL in that
//! variant), checked through the binary's output and the store itself.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::TestDatabase;
use postern::store::{EventFilter, Store, UserStatus};

struct Cli {
    _dir: tempfile::TempDir,
    database: TestDatabase,
    data_dir: std::path::PathBuf,
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let database = TestDatabase::new(&data_dir);
        Self {
            _dir: dir,
            database,
            data_dir,
        }
    }

    /// Runs `postern ARGS` on the built-in config with this database; `stdin` is fed when given.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(args)
            .current_dir(self._dir.path())
            .env_remove("POSTERN_CONFIG")
            .env("POSTERN_DATA_DIR", &self.data_dir)
            .env("POSTERN_DATABASE_URL", &self.database.url)
            .envs(common::SHARED_KEY_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (code, stdout, stderr) = self.run(args, stdin);
        assert_eq!(code, 0, "postern {args:?} failed: {stderr}");
        stdout
    }

    async fn store(&self) -> Store {
        Store::open(&self.database.url, 1).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_lifecycle_from_the_command_line() {
    let cli = Cli::new();
    assert!(cli.ok(&["migrate"], None).contains("up to date"));

    let out = cli.ok(
        &[
            "user",
            "add",
            "alice",
            "--email",
            "Alice@Example.com",
            "--role",
            "admin",
            "--role",
            "ops",
            "--password-stdin",
        ],
        Some("correct horse battery\n"),
    );
    assert!(out.starts_with("created user alice ("), "{out}");

    // Usernames and emails are unique regardless of case.
    let (code, _, err) = cli.run(
        &["user", "add", "ALICE", "--email", "other@example.com"],
        None,
    );
    assert_eq!((code, err.trim()), (1, "postern: username already exists"));
    let (code, _, err) = cli.run(
        &["user", "add", "bob", "--email", "alice@EXAMPLE.com"],
        None,
    );
    assert_eq!((code, err.trim()), (1, "postern: email already exists"));
    let (code, _, err) = cli.run(&["user", "add", "carol", "--email", "not-an-email"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not an email address"));
    let (code, _, err) = cli.run(
        &[
            "user",
            "add",
            "dave",
            "--email",
            "d@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("at least 8 characters"), "{err}");

    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["user", "list", "--json"], None)).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "failed adds leave nothing behind: {list}"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&cli.ok(&["user", "show", "alice@example.com", "--json"], None))
            .unwrap();
    assert_eq!(shown["username"], "alice");
    assert_eq!(shown["roles"], serde_json::json!(["admin", "ops"]));
    assert_eq!(shown["has_password"], true);
    assert!(
        shown.get("password_hash").is_none(),
        "the hash is never printed"
    );
    assert!(cli.ok(&["user", "list"], None).contains("admin,ops"));

    let store = cli.store().await;
    let alice = store.user_by_login("ALICE").await.unwrap().unwrap();
    let hash = alice.password_hash.clone().unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let epoch = alice.session_epoch;

    cli.ok(&["user", "remove-role", "alice", "ops"], None);
    cli.ok(&["user", "add-role", "alice", "auditor"], None);
    assert!(
        cli.ok(&["user", "add-role", "alice", "auditor"], None)
            .contains("already has")
    );
    let alice = store.user_by_login("alice").await.unwrap().unwrap();
    assert_eq!(alice.roles, ["admin", "auditor"]);
    assert!(alice.session_epoch > epoch, "role changes end sessions");

    cli.ok(&["user", "disable", "alice"], None);
    assert_eq!(
        store.user_by_login("alice").await.unwrap().unwrap().status,
        UserStatus::Disabled
    );
    cli.ok(&["user", "enable", "alice"], None);
    assert_eq!(
        store.user_by_login("alice").await.unwrap().unwrap().status,
        UserStatus::Enabled
    );

    cli.ok(
        &["user", "set-password", "alice", "--password-stdin"],
        Some("another long password\n"),
    );
    let alice = store.user_by_login("alice").await.unwrap().unwrap();
    assert_ne!(alice.password_hash.unwrap(), hash);

    store
        .set_locked_until(&alice.id, Some(i64::MAX))
        .await
        .unwrap();
    cli.ok(&["user", "unlock", "alice"], None);
    assert_eq!(
        store
            .user_by_login("alice")
            .await
            .unwrap()
            .unwrap()
            .locked_until,
        None
    );
    assert!(
        cli.ok(&["user", "revoke-sessions", "alice"], None)
            .contains("session(s) of alice ended")
    );

    let kinds: Vec<String> = store
        .events(&EventFilter {
            user_id: Some(alice.id.clone()),
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "user.sessions_revoked",
            "user.unlocked",
            "user.password_set",
            "user.enabled",
            "user.disabled",
            "user.role_added",
            "user.role_removed",
            "user.created",
        ]
    );

    cli.ok(&["user", "delete", "alice"], None);
    assert!(store.user_by_login("alice").await.unwrap().is_none());
    let (code, _, err) = cli.run(&["user", "show", "alice"], None);
    assert_eq!((code, err.trim()), (1, "postern: no user named \"alice\""));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_and_events_from_the_command_line() {
    let cli = Cli::new();
    assert!(
        cli.ok(
            &["role", "add", "editors", "--description", "may edit"],
            None
        )
        .contains("created")
    );
    let (code, _, err) = cli.run(&["role", "add", "editors"], None);
    assert_eq!((code, err.trim()), (1, "postern: role already exists"));
    let (code, _, _) = cli.run(&["role", "add", "bad role"], None);
    assert_eq!(code, 2);
    cli.ok(
        &[
            "user",
            "add",
            "zed",
            "--email",
            "zed@example.com",
            "--role",
            "editors",
        ],
        None,
    );

    let roles: serde_json::Value =
        serde_json::from_str(&cli.ok(&["role", "list", "--json"], None)).unwrap();
    assert_eq!(
        roles,
        serde_json::json!([{"name": "editors", "description": "may edit", "users": 1}])
    );
    let (code, _, err) = cli.run(&["role", "remove", "editors"], None);
    assert_eq!(code, 1);
    assert!(err.contains("held by 1 user(s)"), "{err}");
    cli.ok(&["role", "remove", "editors", "--force"], None);
    let store = cli.store().await;
    assert!(
        store
            .user_by_login("zed")
            .await
            .unwrap()
            .unwrap()
            .roles
            .is_empty()
    );

    let events: serde_json::Value = serde_json::from_str(&cli.ok(
        &[
            "events",
            "--kind",
            "role.deleted",
            "--since",
            "1h",
            "--json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(
        events[0]["detail"],
        serde_json::json!({"role": "editors", "forced": true})
    );
    let zed_events: serde_json::Value =
        serde_json::from_str(&cli.ok(&["events", "--user", "zed", "--json"], None)).unwrap();
    assert_eq!(zed_events[0]["kind"], "user.created");
    let table = cli.ok(&["events", "--limit", "2"], None);
    assert_eq!(
        table.lines().count(),
        3,
        "a header and two events:\n{table}"
    );
    let (code, _, _) = cli.run(&["events", "--since", "whenever"], None);
    assert_eq!(code, 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_resets_and_the_mail_queue_from_the_command_line() {
    let cli = Cli::new();
    let out = cli.ok(
        &[
            "user",
            "add",
            "ivy",
            "--email",
            "ivy@example.com",
            "--send-verification",
            "--send-welcome",
        ],
        None,
    );
    assert!(
        out.contains("verification mail queued for ivy@example.com"),
        "{out}"
    );
    assert!(out.contains("welcome mail queued"), "{out}");
    let store = cli.store().await;
    let ivy = store.user_by_login("ivy").await.unwrap().unwrap();
    assert_eq!(ivy.status, UserStatus::Unverified);
    store.close().await;

    let out = cli.ok(&["user", "reset-password", "ivy@example.com"], None);
    assert!(out.contains("password-reset mail queued"), "{out}");
    let (code, _, err) = cli.run(&["user", "reset-password", "nobody"], None);
    assert_eq!((code, err.trim()), (1, "postern: no user named \"nobody\""));

    // queued for the server to send: listed (never with bodies), pending
    let listed: serde_json::Value =
        serde_json::from_str(&cli.ok(&["mail", "list", "--json"], None)).unwrap();
    let kinds: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["password_reset", "welcome", "verification"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "pending" && m.get("message").is_none())
    );
    assert!(cli.ok(&["mail", "list"], None).contains("ivy@example.com"));
    assert_eq!(
        cli.ok(&["mail", "list", "--failed", "--json"], None).trim(),
        "[]"
    );
    let (code, _, err) = cli.run(&["mail", "retry", "1"], None);
    assert_eq!(code, 1, "only failed messages are retried: {err}");
    assert!(err.contains("is pending, not failed"), "{err}");

    let store = cli.store().await;
    let events = store
        .events(&EventFilter {
            kind: Some("password.reset_requested".into()),
            limit: 10,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert!(events[0].actor.as_deref().unwrap_or("").starts_with("cli:"));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn importing_users_from_a_spreadsheet_on_the_command_line() {
    let cli = Cli::new();
    cli.ok(&["role", "add", "staff"], None);
    let csv = cli.data_dir.join("users.csv");
    std::fs::write(
        &csv,
        "First Name,Last Name,Email,Role,Password\n\
         Ada,Lovelace,ada@example.com,staff,an imported password 1\n\
         Grace,Hopper,grace@example.com,,\n\
         Bad,Email,not-an-email,,\n\
         Weak,Password,weak@example.com,,short\n",
    )
    .unwrap();
    let path = csv.to_str().unwrap();

    // A dry run reports each refused row and writes nothing; refused rows make the exit 1.
    let (code, out, err) = cli.run(&["user", "import", path, "--dry-run"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("line 4: not-an-email: \"not-an-email\" is not an email address"),
        "{out}"
    );
    assert!(
        out.contains("line 5: weak@example.com: password: the password must be at least"),
        "{out}"
    );
    assert!(
        out.contains("dry run: 2 row(s) would be imported, 2 refused"),
        "{out}"
    );
    assert_eq!(err.trim(), "postern: 2 of 4 row(s) refused");
    let store = cli.store().await;
    assert!(
        store
            .user_by_login("ada@example.com")
            .await
            .unwrap()
            .is_none()
    );

    let (code, out, _) = cli.run(&["user", "import", path, "--all-or-nothing"], None);
    assert_eq!(code, 1);
    assert!(
        out.contains("nothing was imported (--all-or-nothing)"),
        "{out}"
    );
    assert!(
        store
            .user_by_login("ada@example.com")
            .await
            .unwrap()
            .is_none()
    );

    let (code, out, _) = cli.run(&["user", "import", path, "--json"], None);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (report["imported"].as_u64(), report["refused"].as_u64()),
        (Some(2), Some(2))
    );
    let ada = store
        .user_by_login("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ada.username.as_str(), ada.roles.as_slice()),
        ("ada@example.com", &["staff".to_string()][..])
    );
    assert!(ada.password_hash.is_some());
    let grace = store
        .user_by_login("grace@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        grace.status,
        UserStatus::Unverified,
        "invited to choose a password"
    );
    let queued: serde_json::Value =
        serde_json::from_str(&cli.ok(&["mail", "list", "--json"], None)).unwrap();
    assert_eq!(queued[0]["kind"], "verification");
    assert_eq!(queued[0]["recipient"], "grace@example.com");

    // An XLSX file with a role nobody has yet: refused, then created on purpose.
    let xlsx = cli.data_dir.join("more.xlsx");
    std::fs::write(
        &xlsx,
        common::xlsx(&[
            &["First Name", "Last Name", "Email", "Role", "Password"],
            &[
                "Xena",
                "Sheet",
                "xena@example.com",
                "auditors",
                "an imported password 2",
            ],
        ]),
    )
    .unwrap();
    let xlsx = xlsx.to_str().unwrap();
    let (code, out, _) = cli.run(&["user", "import", xlsx], None);
    assert_eq!(code, 1);
    assert!(out.contains("role \"auditors\" does not exist"), "{out}");
    let out = cli.ok(&["user", "import", xlsx, "--create-roles"], None);
    assert!(
        out.contains("imported 1 user(s), 0 row(s) refused"),
        "{out}"
    );
    assert!(out.contains("created roles: auditors"), "{out}");

    // Files that cannot be read at all exit 2 and say why.
    let broken = cli.data_dir.join("broken.xlsx");
    std::fs::write(&broken, b"PK\x03\x04 not a workbook").unwrap();
    let (code, _, err) = cli.run(&["user", "import", broken.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(err.contains("not readable as XLSX"), "{err}");
    let (code, _, err) = cli.run(&["user", "import", "/no/such/file.csv"], None);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /no/such/file.csv"), "{err}");
    store.close().await;
}
