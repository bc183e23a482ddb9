//! Bulk user import in the spreadsheet format of the user-database library postern replaces:
//! `First Name, Last Name, Email, Role, Password` (role and password may be blank), as CSV or
//! XLSX. Every row is checked first; then the valid rows are created in one transaction, or none
//! are when the import is all-or-nothing and a row has a problem. The email is the username.
//! Users without a password get an invitation (the verification mail, whose link lets them
//! choose one) when mail is on.

use std::collections::{BTreeSet, HashMap};
use std::io::Cursor;

use serde_json::{Value, json};

use super::admin::{AccountError, Accounts};
use super::lifecycle::Lifecycle;
use super::policy::Identity;
use crate::store::{NewUser, Store, StoreError, UserStatus, validate_email, validate_username};

/// The largest file an import reads.
pub const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;
/// The most rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 10_000;
const MAX_NAME_CHARS: usize = 100;

/// The columns in the order a file without a header row must use.
pub const COLUMNS: [&str; 5] = ["First Name", "Last Name", "Email", "Role", "Password"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SheetFormat {
    Csv,
    Xlsx,
}

impl SheetFormat {
    /// XLSX files are ZIP archives; anything else is read as CSV.
    pub fn sniff(bytes: &[u8]) -> Self {
        if bytes.starts_with(b"PK\x03\x04") {
            Self::Xlsx
        } else {
            Self::Csv
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not readable as {format}: {reason}")]
    Unreadable {
        format: &'static str,
        reason: String,
    },
    #[error("the file has no user rows")]
    Empty,
    #[error("the file has more than {MAX_IMPORT_ROWS} rows")]
    TooManyRows,
    #[error("the file is larger than {} MiB", MAX_IMPORT_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("the header row has no {0:?} column")]
    MissingColumn(&'static str),
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        Self::Account(AccountError::Store(e))
    }
}

/// One user row as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The row's line in the file (1-based, the header counted).
    pub line: usize,
    pub given_name: String,
    pub surname: String,
    pub email: String,
    pub roles: Vec<String>,
    pub password: Option<String>,
}

/// How an import runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Check only: nothing is written.
    pub dry_run: bool,
    /// Import nothing when any row has a problem.
    pub all_or_nothing: bool,
    /// Create roles the file names that do not exist yet (else such rows are refused).
    pub create_roles: bool,
}

/// What became of one row.
#[derive(Debug, Clone)]
pub struct RowOutcome {
    pub line: usize,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub has_password: bool,
    pub problems: Vec<String>,
    pub user_id: Option<String>,
    pub invited: bool,
}

#[derive(Debug, Clone)]
pub struct ImportReport {
    pub rows: Vec<RowOutcome>,
    pub options: ImportOptions,
    pub imported: usize,
    /// Roles the import created.
    pub created_roles: Vec<String>,
    /// Users without a password whose invitation could not be sent (mail off or refused).
    pub uninvited: usize,
}

impl ImportReport {
    pub fn refused(&self) -> usize {
        self.rows.iter().filter(|r| !r.problems.is_empty()).count()
    }

    pub fn valid(&self) -> usize {
        self.rows.len() - self.refused()
    }

    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "line": r.line,
                    "email": r.email,
                    "name": r.name,
                    "roles": r.roles,
                    "has_password": r.has_password,
                    "problems": r.problems,
                    "user_id": r.user_id,
                    "invited": r.invited,
                })
            })
            .collect();
        json!({
            "dry_run": self.options.dry_run,
            "all_or_nothing": self.options.all_or_nothing,
            "rows": rows,
            "valid": self.valid(),
            "refused": self.refused(),
            "imported": self.imported,
            "created_roles": self.created_roles,
            "uninvited": self.uninvited,
        })
    }
}

fn cell(text: &str) -> String {
    text.trim().to_string()
}

/// Which field each column holds, from the header row (any order, any case, extra columns
/// ignored) or, without one, the fixed order.
struct Layout {
    positions: [Option<usize>; 5],
}

impl Layout {
    fn fixed() -> Self {
        Self {
            positions: [Some(0), Some(1), Some(2), Some(3), Some(4)],
        }
    }

    fn normalise(name: &str) -> String {
        name.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// The header's layout, if `cells` is a header row (its first cell names a column).
    fn from_header(cells: &[String]) -> Result<Option<Self>, ImportError> {
        let names: Vec<String> = cells.iter().map(|c| Self::normalise(c)).collect();
        let known: Vec<String> = COLUMNS.iter().map(|c| Self::normalise(c)).collect();
        if !names.first().is_some_and(|first| known.contains(first)) {
            return Ok(None);
        }
        let mut positions = [None; 5];
        for (i, column) in known.iter().enumerate() {
            positions[i] = names.iter().position(|n| n == column);
        }
        for (i, required) in COLUMNS.iter().enumerate().take(3) {
            if positions[i].is_none() {
                return Err(ImportError::MissingColumn(required));
            }
        }
        Ok(Some(Self { positions }))
    }

    fn row(&self, line: usize, cells: &[String]) -> ImportRow {
        let get = |i: usize| {
            self.positions[i]
                .and_then(|p| cells.get(p))
                .map(|c| cell(c))
                .unwrap_or_default()
        };
        let roles = get(3)
            .split([';', ','])
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        // Passwords are taken as written: spaces may be part of them.
        let password = self.positions[4]
            .and_then(|p| cells.get(p))
            .filter(|p| !p.is_empty())
            .cloned();
        ImportRow {
            line,
            given_name: get(0),
            surname: get(1),
            email: get(2),
            roles,
            password,
        }
    }
}

/// The user rows of a spreadsheet (blank rows skipped).
pub fn parse_sheet(bytes: &[u8]) -> Result<Vec<ImportRow>, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge);
    }
    let lines = match SheetFormat::sniff(bytes) {
        SheetFormat::Csv => csv_lines(bytes)?,
        SheetFormat::Xlsx => xlsx_lines(bytes)?,
    };
    let mut lines = lines
        .into_iter()
        .filter(|(_, cells)| cells.iter().any(|c| !c.trim().is_empty()))
        .peekable();
    let layout = match lines.peek() {
        None => return Err(ImportError::Empty),
        Some((_, first)) => Layout::from_header(first)?,
    };
    let layout = match layout {
        Some(layout) => {
            lines.next();
            layout
        }
        None => Layout::fixed(),
    };
    let mut rows = Vec::new();
    for (line, cells) in lines {
        if rows.len() == MAX_IMPORT_ROWS {
            return Err(ImportError::TooManyRows);
        }
        rows.push(layout.row(line, &cells));
    }
    if rows.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(rows)
}

fn csv_lines(bytes: &[u8]) -> Result<Vec<(usize, Vec<String>)>, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ImportError::Unreadable {
            format: "CSV",
            reason: e.to_string(),
        })?;
        if lines.len() > MAX_IMPORT_ROWS + 1 {
            return Err(ImportError::TooManyRows);
        }
        let line = record
            .position()
            .map_or(lines.len() + 1, |p| p.line() as usize);
        lines.push((line, record.iter().map(str::to_owned).collect()));
    }
    Ok(lines)
}

fn xlsx_lines(bytes: &[u8]) -> Result<Vec<(usize, Vec<String>)>, ImportError> {
    use calamine::{Data, Reader, Xlsx};
    let unreadable = |reason: String| ImportError::Unreadable {
        format: "XLSX",
        reason,
    };
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e: calamine::XlsxError| unreadable(e.to_string()))?;
    let sheet = book
        .worksheet_range_at(0)
        .ok_or_else(|| unreadable("the workbook has no sheet".into()))?
        .map_err(|e| unreadable(e.to_string()))?;
    if sheet.height() > MAX_IMPORT_ROWS + 1 {
        return Err(ImportError::TooManyRows);
    }
    let first_row = sheet.start().map_or(0, |(row, _)| row as usize);
    let first_column = sheet.start().map_or(0, |(_, column)| column as usize);
    let lines = sheet
        .rows()
        .enumerate()
        .map(|(i, cells)| {
            // Columns left of the used range are empty: keep positions as the sheet shows them.
            let mut texts = vec![String::new(); first_column];
            texts.extend(cells.iter().map(|c| match c {
                &Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                Data::Empty => String::new(),
                other => other.to_string(),
            }));
            (first_row + i + 1, texts)
        })
        .collect();
    Ok(lines)
}

/// `rows` as a CSV file with the header row (how the console carries a checked file to its
/// import step).
pub fn to_csv(rows: &[ImportRow]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut records = vec![COLUMNS.map(str::to_owned).to_vec()];
    records.extend(rows.iter().map(|r| {
        vec![
            r.given_name.clone(),
            r.surname.clone(),
            r.email.clone(),
            r.roles.join(";"),
            r.password.clone().unwrap_or_default(),
        ]
    }));
    for record in records {
        // Writing to a Vec fails only on a broken record, which these are not.
        if writer.write_record(&record).is_err() {
            break;
        }
    }
    writer
        .into_inner()
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

/// The problems of a row that need nothing but the row itself.
fn row_problems(row: &ImportRow) -> Vec<String> {
    let mut problems = Vec::new();
    for (value, column) in [(&row.given_name, "First Name"), (&row.surname, "Last Name")] {
        if value.is_empty() {
            problems.push(format!("{column} is empty"));
        } else if value.chars().count() > MAX_NAME_CHARS {
            problems.push(format!(
                "{column} is longer than {MAX_NAME_CHARS} characters"
            ));
        }
    }
    if row.email.is_empty() {
        problems.push("Email is empty".into());
    } else if let Err(e) = validate_email(&row.email) {
        problems.push(e.to_string());
    } else if validate_username(&row.email).is_err() {
        problems.push(format!(
            "{:?} cannot be a username (letters, digits, '.', '_', '-', '+' and '@' only)",
            row.email
        ));
    }
    for role in &row.roles {
        if let Err(e) = crate::store::validate_role(role) {
            problems.push(e.to_string());
        }
    }
    problems
}

impl Accounts<'_> {
    /// Checks every row, then (unless a dry run, or all-or-nothing with a refused row) creates
    /// the valid ones in one transaction and sends invitations to those without a password.
    pub async fn import_users(
        &self,
        rows: Vec<ImportRow>,
        options: ImportOptions,
        lifecycle: Option<&Lifecycle>,
    ) -> Result<ImportReport, ImportError> {
        let existing_roles: BTreeSet<String> = self
            .store
            .roles()
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut problems = row_problems(row);
            let key = row.email.to_lowercase();
            if !key.is_empty() {
                match seen.get(&key) {
                    Some(first) => problems.push(format!("the same email as line {first}")),
                    None => {
                        seen.insert(key, row.line);
                        if problems.is_empty() && self.store.login_unavailable(&row.email).await? {
                            problems.push("a user with this email or username exists".into());
                        }
                    }
                }
            }
            for role in &row.roles {
                if !options.create_roles && !existing_roles.contains(role) {
                    problems.push(format!(
                        "role {role:?} does not exist (create it first, or import with create_roles)"
                    ));
                }
            }
            if let Some(password) = &row.password {
                let who = Identity {
                    username: &row.email,
                    email: &row.email,
                    given_name: &row.given_name,
                    surname: &row.surname,
                };
                if let Err(v) = self
                    .policy
                    .check_with_strength(self.passwords, password, &who)
                    .await
                    .map_err(AccountError::from)?
                {
                    problems.push(format!("password: {}", v.message));
                }
            }
            outcomes.push(RowOutcome {
                line: row.line,
                email: row.email.clone(),
                name: format!("{} {}", row.given_name, row.surname)
                    .trim()
                    .to_string(),
                roles: row.roles.clone(),
                has_password: row.password.is_some(),
                problems,
                user_id: None,
                invited: false,
            });
        }
        let mut report = ImportReport {
            rows: outcomes,
            options,
            imported: 0,
            created_roles: Vec::new(),
            uninvited: 0,
        };
        if options.dry_run || (options.all_or_nothing && report.refused() > 0) {
            return Ok(report);
        }
        let mail_on = lifecycle.is_some_and(|l| l.mail_on());
        let mut drafts = Vec::new();
        let mut created_from = Vec::new();
        for (row, outcome) in rows.into_iter().zip(&report.rows) {
            if !outcome.problems.is_empty() {
                continue;
            }
            let password_hash = match row.password {
                Some(password) => Some(
                    self.passwords
                        .hash(password)
                        .await
                        .map_err(AccountError::from)?,
                ),
                None => None,
            };
            let status = if password_hash.is_none() && mail_on {
                UserStatus::Unverified
            } else {
                UserStatus::Enabled
            };
            drafts.push(NewUser {
                username: row.email.clone(),
                email: row.email,
                given_name: row.given_name,
                surname: row.surname,
                status: Some(status),
                password_hash,
                roles: row.roles,
            });
            created_from.push(outcome.line);
        }
        if drafts.is_empty() {
            return Ok(report);
        }
        report.created_roles = drafts
            .iter()
            .flat_map(|d| d.roles.iter())
            .filter(|r| !existing_roles.contains(*r))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let ids = self
            .store
            .create_users(&drafts, self.policy.history, self.now)
            .await?;
        report.imported = ids.len();
        for ((id, draft), line) in ids.iter().zip(&drafts).zip(created_from) {
            let detail = json!({"username": draft.username, "roles": draft.roles, "import": true});
            self.event("user.created", Some(id), detail).await?;
            let invited = match (draft.password_hash.is_none(), lifecycle) {
                (true, Some(lifecycle)) if mail_on => self.invite(self.store, lifecycle, id).await,
                _ => false,
            };
            if draft.password_hash.is_none() && !invited {
                report.uninvited += 1;
            }
            if let Some(outcome) = report.rows.iter_mut().find(|r| r.line == line) {
                outcome.user_id = Some(id.clone());
                outcome.invited = invited;
            }
        }
        let detail = json!({
            "imported": report.imported,
            "refused": report.refused(),
            "created_roles": report.created_roles,
        });
        self.event("users.imported", None, detail).await?;
        Ok(report)
    }

    /// Queues the verification mail (its link lets the user choose a first password).
    async fn invite(&self, store: &Store, lifecycle: &Lifecycle, user_id: &str) -> bool {
        let user = match store.user_by_id(user_id).await {
            Ok(Some(user)) => user,
            _ => return false,
        };
        if lifecycle.check_mailable(&user.email).is_err() {
            return false;
        }
        match lifecycle.send_verification(store, &user).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not queue an import invitation");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<ImportRow> {
        parse_sheet(text.as_bytes()).unwrap()
    }

    #[test]
    fn reads_the_userdb_example_with_its_header() {
        let rows = parse(
            "First Name,Last Name,Email,Role,Password\nJohn,Smith,john.smith@example.com,admin,InitialPassword3!2!1!\n",
        );
        assert_eq!(
            rows,
            vec![ImportRow {
                line: 2,
                given_name: "John".into(),
                surname: "Smith".into(),
                email: "john.smith@example.com".into(),
                roles: vec!["admin".into()],
                password: Some("InitialPassword3!2!1!".into()),
            }]
        );
    }

    #[test]
    fn without_a_header_columns_are_in_the_fixed_order_and_blanks_are_none() {
        let rows = parse("Ann,Lee,ann@example.com,,\n\n \nBo,Ek,bo@example.com\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 1);
        assert!(rows[0].roles.is_empty());
        assert_eq!(rows[0].password, None);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].email, "bo@example.com");
    }

    #[test]
    fn header_columns_in_any_order_and_case_with_extra_columns_and_a_bom() {
        let rows =
            parse("\u{feff}email,LAST NAME,first_name,Account Name\nx@example.com,Y,Z,acme\n");
        assert_eq!(rows[0].email, "x@example.com");
        assert_eq!(rows[0].surname, "Y");
        assert_eq!(rows[0].given_name, "Z");
        assert_eq!(rows[0].password, None);
    }

    #[test]
    fn quoted_fields_keep_commas_and_several_roles_split() {
        let rows = parse("\"Smith, Jr\",B,c@example.com,\"staff;editor\",\" spaced pass \"\n");
        assert_eq!(rows[0].given_name, "Smith, Jr");
        assert_eq!(rows[0].roles, vec!["staff", "editor"]);
        assert_eq!(rows[0].password.as_deref(), Some(" spaced pass "));
    }

    #[test]
    fn a_header_missing_a_required_column_is_named() {
        let err = parse_sheet(b"First Name,Last Name,Role\nA,B,c\n").unwrap_err();
        assert!(matches!(err, ImportError::MissingColumn("Email")), "{err}");
    }

    #[test]
    fn empty_files_broken_csv_and_broken_xlsx_are_refused() {
        assert!(matches!(parse_sheet(b""), Err(ImportError::Empty)));
        assert!(matches!(
            parse_sheet(b"First Name,Last Name,Email\n"),
            Err(ImportError::Empty)
        ));
        assert!(matches!(
            parse_sheet(b"a,b,\xff\xfe@x.com\n"),
            Err(ImportError::Unreadable { format: "CSV", .. })
        ));
        assert!(matches!(
            parse_sheet(b"PK\x03\x04not really a zip"),
            Err(ImportError::Unreadable { format: "XLSX", .. })
        ));
    }

    #[test]
    fn too_many_rows_are_refused() {
        let mut text = String::from("First Name,Last Name,Email\n");
        for i in 0..=MAX_IMPORT_ROWS {
            text.push_str(&format!("a,b,u{i}@example.com\n"));
        }
        assert!(matches!(
            parse_sheet(text.as_bytes()),
            Err(ImportError::TooManyRows)
        ));
    }

    #[test]
    fn row_checks_name_each_problem() {
        let rows = parse(
            "First Name,Last Name,Email,Role\n,Lee,not-an-email,bad role!\nA,B,o'neil@example.com,\n",
        );
        let first = row_problems(&rows[0]);
        assert!(
            first.iter().any(|p| p == "First Name is empty"),
            "{first:?}"
        );
        assert!(
            first.iter().any(|p| p.contains("not an email")),
            "{first:?}"
        );
        assert!(
            first.iter().any(|p| p.contains("role \"bad role!\"")),
            "{first:?}"
        );
        let second = row_problems(&rows[1]);
        assert!(second[0].contains("cannot be a username"), "{second:?}");
    }

    #[test]
    fn csv_written_back_reads_the_same() {
        let rows = parse("A,\"B, C\",a@example.com,x;y,\"p,\"\"q\"\n");
        let again = parse(&to_csv(&rows));
        assert_eq!(again[0].given_name, rows[0].given_name);
        assert_eq!(again[0].surname, rows[0].surname);
        assert_eq!(again[0].roles, rows[0].roles);
        assert_eq!(again[0].password, rows[0].password);
        assert_eq!(again[0].line, 2, "the written file has a header");
    }
}
