//! Bulk user import in the spreadsheet format of the user-database library postern replaces:
//! `First Name, Last Name, Email, Role, Password` (role and password may be blank), as CSV or
//! XLSX. Every row is checked first; then the valid rows are created in one transaction, or none
//! are when the import is all-or-nothing and a row has a problem. The email is the username.
//! Users without a password get an invitation (the verification mail, whose link lets them
//! choose one) when mail is on.

use std::collections::{BTreeSet, HashMap};
use std::io::{Cursor, Read};

use serde_json::{Value, json};

use super::admin::{AccountError, Accounts};
use super::lifecycle::Lifecycle;
use super::policy::Identity;
use crate::store::{NewEvent, NewUser, StoreError, UserStatus, validate_email, validate_username};

/// The largest file an import reads.
pub const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;
/// The most rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 10_000;
const MAX_NAME_CHARS: usize = 100;
/// What an XLSX file may unpack to, all parts together (a zip bomb stops here).
const MAX_UNPACKED_BYTES: u64 = 32 * 1024 * 1024;
const MAX_XLSX_PARTS: usize = 1000;
/// Columns read from a sheet; cells further right are ignored.
const MAX_COLUMNS: u32 = 32;
/// Rows whose checks (password policy, hashing) run at once on the password pool.
const CONCURRENT_CHECKS: usize = 8;

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

    /// The header's layout, if `cells` is a header row: it names two of the columns (or starts
    /// with one).
    fn from_header(cells: &[String]) -> Result<Option<Self>, ImportError> {
        let names: Vec<String> = cells.iter().map(|c| Self::normalise(c)).collect();
        let known: Vec<String> = COLUMNS.iter().map(|c| Self::normalise(c)).collect();
        let named = names.iter().filter(|n| known.contains(n)).count();
        let first_named = names.first().is_some_and(|first| known.contains(first));
        if named < 2 && !first_named {
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
        // Trimmed like every cell, as the userdb import does.
        let password = Some(get(4)).filter(|p| !p.is_empty());
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

/// The field separator of a CSV file: whichever of `,`, `;` and tab its first line has most of
/// (spreadsheets in many locales save with `;`).
fn sniff_delimiter(text: &str) -> u8 {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| (first.bytes().filter(|b| b == d).count(), *d == b','))
        .unwrap_or(b',')
}

fn csv_lines(bytes: &[u8]) -> Result<Vec<(usize, Vec<String>)>, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Not UTF-8: what older spreadsheet programs save, Windows-1252 (Latin-1 and more).
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(sniff_delimiter(&text))
        .from_reader(text.as_bytes());
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

/// Refuses a workbook that unpacks to more than [`MAX_UNPACKED_BYTES`], by decompressing it
/// (the sizes its directory claims may lie).
fn check_unpacked_size(bytes: &[u8]) -> Result<(), ImportError> {
    let unreadable = |reason: String| ImportError::Unreadable {
        format: "XLSX",
        reason,
    };
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| unreadable(e.to_string()))?;
    if archive.len() > MAX_XLSX_PARTS {
        return Err(unreadable(format!("more than {MAX_XLSX_PARTS} parts")));
    }
    let mut total = 0u64;
    for i in 0..archive.len() {
        let part = archive.by_index(i).map_err(|e| unreadable(e.to_string()))?;
        let budget = MAX_UNPACKED_BYTES - total;
        let read = std::io::copy(&mut Read::take(part, budget + 1), &mut std::io::sink())
            .map_err(|e| unreadable(e.to_string()))?;
        total += read;
        if total > MAX_UNPACKED_BYTES {
            return Err(unreadable(format!(
                "it unpacks to more than {} MiB",
                MAX_UNPACKED_BYTES / (1024 * 1024)
            )));
        }
    }
    Ok(())
}

/// The first sheet's rows, read cell by cell: a cell far down or far right costs nothing, as
/// only the first [`MAX_COLUMNS`] columns and [`MAX_IMPORT_ROWS`] rows are kept.
fn xlsx_lines(bytes: &[u8]) -> Result<Vec<(usize, Vec<String>)>, ImportError> {
    use calamine::{DataRef, Reader, Xlsx};
    let unreadable = |reason: String| ImportError::Unreadable {
        format: "XLSX",
        reason,
    };
    check_unpacked_size(bytes)?;
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e: calamine::XlsxError| unreadable(e.to_string()))?;
    let first = book
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| unreadable("the workbook has no sheet".into()))?;
    let mut cells = book
        .worksheet_cells_reader(&first)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut rows: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    while let Some(cell) = cells.next_cell().map_err(|e| unreadable(e.to_string()))? {
        let (row, column) = cell.get_position();
        if column >= MAX_COLUMNS {
            continue;
        }
        let text = match cell.get_value() {
            DataRef::Empty | DataRef::Error(_) => continue,
            &DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            DataRef::SharedString(s) => (*s).to_string(),
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
            other => calamine::Data::from(other.clone()).to_string(),
        };
        if !rows.contains_key(&row) && rows.len() > MAX_IMPORT_ROWS {
            return Err(ImportError::TooManyRows);
        }
        let line = rows.entry(row).or_default();
        let column = column as usize;
        if line.len() <= column {
            line.resize(column + 1, String::new());
        }
        line[column] = text;
    }
    Ok(rows
        .into_iter()
        .map(|(row, cells)| (row as usize + 1, cells))
        .collect())
}

/// A column's letters: 0 → `A`, 25 → `Z`, 26 → `AA`.
fn column_letters(mut column: u32) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (column % 26) as u8);
        if column < 26 {
            break;
        }
        column = column / 26 - 1;
    }
    letters.iter().rev().map(|&b| b as char).collect()
}

/// A one-sheet XLSX workbook with text `cells` at (row, column), both from 0: the example
/// file the console offers, and what the tests import.
pub fn xlsx_workbook(cells: &[(u32, u32, &str)]) -> Vec<u8> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#;
    let escape = crate::proxy::respond::escape_html;
    let mut sheet = format!(
        r#"{HEAD}<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#
    );
    let mut sorted: Vec<&(u32, u32, &str)> = cells.iter().collect();
    sorted.sort_by_key(|(row, column, _)| (*row, *column));
    let mut open_row = None;
    for (row, column, text) in sorted {
        if open_row != Some(*row) {
            if open_row.is_some() {
                sheet.push_str("</row>");
            }
            let _ = write!(sheet, "<row r=\"{}\">", row + 1);
            open_row = Some(*row);
        }
        let _ = write!(
            sheet,
            "<c r=\"{}{}\" t=\"inlineStr\"><is><t xml:space=\"preserve\">{}</t></is></c>",
            column_letters(*column),
            row + 1,
            escape(text)
        );
    }
    if open_row.is_some() {
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    let relationships = "http://schemas.openxmlformats.org/package/2006/relationships";
    let office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let parts = [
        (
            "[Content_Types].xml",
            format!(
                r#"{HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#
            ),
        ),
        (
            "_rels/.rels",
            format!(
                r#"{HEAD}<Relationships xmlns="{relationships}"><Relationship Id="rId1" Type="{office}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        ),
        (
            "xl/workbook.xml",
            format!(
                r#"{HEAD}<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="{office}"><sheets><sheet name="Users" sheetId="1" r:id="rId1"/></sheets></workbook>"#
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"{HEAD}<Relationships xmlns="{relationships}"><Relationship Id="rId1" Type="{office}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
            ),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in parts {
        // Writing into memory fails only on a broken archive, which this one is not.
        if zip.start_file(name, options).is_err() || zip.write_all(text.as_bytes()).is_err() {
            return Vec::new();
        }
    }
    zip.finish().map(Cursor::into_inner).unwrap_or_default()
}

/// [`xlsx_workbook`] from rows of cells.
pub fn xlsx_from_rows(rows: &[&[&str]]) -> Vec<u8> {
    let cells: Vec<(u32, u32, &str)> = rows
        .iter()
        .enumerate()
        .flat_map(|(r, row)| {
            row.iter()
                .enumerate()
                .filter(|(_, text)| !text.is_empty())
                .map(move |(c, text)| (r as u32, c as u32, *text))
        })
        .collect();
    xlsx_workbook(&cells)
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
    /// The policy's verdict on a row's password (none: nothing to check).
    async fn password_problem(&self, row: &ImportRow) -> Result<Option<String>, ImportError> {
        let Some(password) = &row.password else {
            return Ok(None);
        };
        let who = Identity {
            username: &row.email,
            email: &row.email,
            given_name: &row.given_name,
            surname: &row.surname,
        };
        let verdict = self
            .policy
            .check_with_strength(self.passwords, password, &who)
            .await
            .map_err(AccountError::from)?;
        Ok(verdict.err().map(|v| format!("password: {}", v.message)))
    }

    async fn hash_of(&self, row: &ImportRow) -> Result<Option<String>, AccountError> {
        match &row.password {
            Some(password) => Ok(Some(self.passwords.hash(password.clone()).await?)),
            None => Ok(None),
        }
    }

    /// Checks every row, then (unless a dry run, or all-or-nothing with a refused row) creates
    /// the valid ones in one transaction, each with its `user.created` event, and sends
    /// invitations to those without a password.
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
        let emails: Vec<String> = rows
            .iter()
            .filter(|r| !r.email.is_empty())
            .map(|r| r.email.clone())
            .collect();
        let taken = self.store.unavailable_logins(&emails).await?;
        let mut password_problems = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(CONCURRENT_CHECKS) {
            let checks = chunk.iter().map(|row| self.password_problem(row));
            password_problems.extend(futures_util::future::try_join_all(checks).await?);
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut outcomes = Vec::with_capacity(rows.len());
        for (row, password_problem) in rows.iter().zip(password_problems) {
            let mut problems = row_problems(row);
            let key = row.email.to_lowercase();
            if !key.is_empty() {
                match seen.get(&key) {
                    Some(first) => problems.push(format!("the same email as line {first}")),
                    None => {
                        seen.insert(key.clone(), row.line);
                        if taken.contains(&key) {
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
            problems.extend(password_problem);
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
        let valid: Vec<(ImportRow, usize)> = rows
            .into_iter()
            .zip(&report.rows)
            .filter(|(_, outcome)| outcome.problems.is_empty())
            .map(|(row, outcome)| (row, outcome.line))
            .collect();
        if valid.is_empty() {
            return Ok(report);
        }
        let mut drafts: Vec<NewUser> = Vec::with_capacity(valid.len());
        for chunk in valid.chunks(CONCURRENT_CHECKS) {
            let hashes = chunk.iter().map(|(row, _)| self.hash_of(row));
            let hashes = futures_util::future::try_join_all(hashes).await?;
            for ((row, _), password_hash) in chunk.iter().zip(hashes) {
                let status = if password_hash.is_none() && mail_on {
                    UserStatus::Unverified
                } else {
                    UserStatus::Enabled
                };
                drafts.push(NewUser {
                    username: row.email.clone(),
                    email: row.email.clone(),
                    given_name: row.given_name.clone(),
                    surname: row.surname.clone(),
                    status: Some(status),
                    password_hash,
                    roles: row.roles.clone(),
                });
            }
        }
        report.created_roles = drafts
            .iter()
            .flat_map(|d| d.roles.iter())
            .filter(|r| !existing_roles.contains(*r))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let created = |user: &NewUser| NewEvent {
            kind: "user.created".into(),
            actor: Some(self.actor.name.clone()),
            ip: self.actor.ip.clone(),
            detail: json!({"username": user.username, "roles": user.roles, "import": true}),
            ..NewEvent::default()
        };
        let ids = self
            .store
            .create_users(&drafts, self.policy.history, &created, self.now)
            .await?;
        report.imported = ids.len();
        // The users exist from here on: what follows is reported, never an error that would
        // hide what was written.
        for ((id, draft), (_, line)) in ids.iter().zip(&drafts).zip(&valid) {
            let invited = match lifecycle {
                Some(lifecycle) if mail_on && draft.password_hash.is_none() => {
                    self.invite(lifecycle, id).await
                }
                _ => false,
            };
            if draft.password_hash.is_none() && !invited {
                report.uninvited += 1;
            }
            if let Some(outcome) = report.rows.iter_mut().find(|r| r.line == *line) {
                outcome.user_id = Some(id.clone());
                outcome.invited = invited;
            }
        }
        let detail = json!({
            "imported": report.imported,
            "refused": report.refused(),
            "created_roles": report.created_roles,
        });
        if let Err(e) = self.event("users.imported", None, detail).await {
            tracing::warn!(error = %e, "could not record the users.imported event");
        }
        Ok(report)
    }

    /// Queues the verification mail (its link lets the user choose a first password).
    async fn invite(&self, lifecycle: &Lifecycle, user_id: &str) -> bool {
        let user = match self.store.user_by_id(user_id).await {
            Ok(Some(user)) => user,
            _ => return false,
        };
        if lifecycle.check_mailable(&user.email).is_err() {
            return false;
        }
        match lifecycle.send_verification(self.store, &user).await {
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
        assert_eq!(
            rows[0].password.as_deref(),
            Some("spaced pass"),
            "cells are trimmed, as userdb does"
        );
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
    fn semicolons_tabs_and_windows_1252_files_are_read() {
        let rows = parse("First Name;Last Name;Email\nAnn;Lee;ann@example.com\n");
        assert_eq!(rows[0].email, "ann@example.com");
        let rows = parse("Ann\tLee\tann@example.com\tstaff, editor\n");
        assert_eq!(rows[0].roles, vec!["staff", "editor"]);
        let latin = b"First Name,Last Name,Email\nRen\xe9,M\xfcller,rene@example.com\n";
        let rows = parse_sheet(latin).unwrap();
        assert_eq!(
            (rows[0].given_name.as_str(), rows[0].surname.as_str()),
            ("Ren\u{e9}", "M\u{fc}ller")
        );
    }

    #[test]
    fn xlsx_rows_are_read_with_their_lines_and_numbers_as_written() {
        let book = xlsx_from_rows(&[
            &["First Name", "Last Name", "Email", "Role", "Password"],
            &["Xena", "Sheet", "x@example.com", "", "a <pass> & more"],
        ]);
        let rows = parse_sheet(&book).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].password.as_deref(), Some("a <pass> & more"));
        assert!(rows[0].roles.is_empty());
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(27), "AB");
        assert_eq!(column_letters(16383), "XFD");
    }

    #[test]
    fn a_cell_far_down_or_far_right_costs_nothing() {
        let header = [(0, 0, "First Name"), (0, 1, "Last Name"), (0, 2, "Email")];
        let mut cells = header.to_vec();
        cells.extend([
            (1, 0, "A"),
            (1, 1, "B"),
            (1, 2, "a@example.com"),
            (1, 16383, "far right"),
        ]);
        let rows = parse_sheet(&xlsx_workbook(&cells)).unwrap();
        assert_eq!(
            rows[0].email, "a@example.com",
            "columns past the limit are ignored"
        );
        let mut corner = cells.clone();
        corner.push((1_048_575, 16383, "the last cell"));
        corner.push((1_048_575, 2, "z@example.com"));
        let rows = parse_sheet(&xlsx_workbook(&corner)).unwrap();
        assert_eq!(rows.len(), 2, "one more row, not a grid of a billion cells");
        assert_eq!(rows[1].line, 1_048_576);
    }

    #[test]
    fn a_workbook_that_unpacks_too_far_is_refused() {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("xl/sharedStrings.xml", options).unwrap();
        let zeros = vec![b' '; 1024 * 1024];
        for _ in 0..33 {
            zip.write_all(&zeros).unwrap();
        }
        let bomb = zip.finish().unwrap().into_inner();
        assert!(bomb.len() < MAX_IMPORT_BYTES);
        let err = parse_sheet(&bomb).unwrap_err();
        assert!(
            err.to_string().contains("unpacks to more than 32 MiB"),
            "{err}"
        );
    }

    #[test]
    fn a_header_is_recognised_by_two_column_names_anywhere() {
        let rows = parse("ID,Email,First Name,Last Name\n7,a@example.com,A,B\n");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].email.as_str(), rows[0].given_name.as_str()),
            ("a@example.com", "A")
        );
    }
}
