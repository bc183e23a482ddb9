//! Users and their roles.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::events::insert_event;
use super::{NewEvent, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Enabled,
    Disabled,
    Unverified,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Unverified => "unverified",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "enabled" => Some(Self::Enabled),
            "disabled" => Some(Self::Disabled),
            "unverified" => Some(Self::Unverified),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub surname: String,
    pub status: UserStatus,
    pub password_hash: Option<String>,
    pub password_changed_at: Option<i64>,
    pub custom_data: String,
    pub session_epoch: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub roles: Vec<String>,
}

impl User {
    /// Everything about the user that may be shown: never the hash.
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "given_name": self.given_name,
            "surname": self.surname,
            "status": self.status.as_str(),
            "roles": self.roles,
            "has_password": self.password_hash.is_some(),
            "locked_until": self.locked_until,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub status: Option<UserStatus>,
    pub role: Option<String>,
    /// Case-insensitive substring of username, email or names.
    pub text: Option<String>,
    pub sort: UserSort,
    pub limit: i64,
    pub offset: i64,
}

/// The order of a user list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserSort {
    #[default]
    Username,
    Email,
    Status,
    /// Newest first.
    Newest,
    Oldest,
}

impl UserSort {
    pub const ALL: [Self; 5] = [
        Self::Username,
        Self::Email,
        Self::Status,
        Self::Newest,
        Self::Oldest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
            Self::Status => "status",
            Self::Newest => "newest",
            Self::Oldest => "oldest",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Username => "lower(username)",
            Self::Email => "lower(email), lower(username)",
            Self::Status => "status, lower(username)",
            Self::Newest => "created_at DESC, lower(username)",
            Self::Oldest => "created_at, lower(username)",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub custom_data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub surname: String,
    pub status: Option<UserStatus>,
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
}

const USER_COLUMNS: &str = "id, username, email, given_name, surname, status, password_hash, \
     password_changed_at, custom_data, session_epoch, locked_until, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        given_name: row.try_get("given_name")?,
        surname: row.try_get("surname")?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| StoreError::Invalid(format!("unknown user status {status:?}")))?,
        password_hash: row.try_get("password_hash")?,
        password_changed_at: row.try_get("password_changed_at")?,
        custom_data: row.try_get("custom_data")?,
        session_epoch: row.try_get("session_epoch")?,
        locked_until: row.try_get("locked_until")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        roles: Vec::new(),
    })
}

pub fn validate_username(username: &str) -> Result<(), StoreError> {
    let ok = !username.is_empty()
        && username.len() <= 254
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "username {username:?} must be 1-254 letters, digits, '.', '_', '-', '+' or '@'"
        )))
    }
}

pub fn validate_email(email: &str) -> Result<(), StoreError> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{email:?} is not an email address"
        )))
    }
}

pub fn validate_role(role: &str) -> Result<(), StoreError> {
    let ok = !role.is_empty()
        && role.len() <= 64
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "role {role:?} must be 1-64 ASCII letters, digits, '.', '_', '-' or ':'"
        )))
    }
}

impl Store {
    pub async fn create_user(&self, new: &NewUser, now: i64) -> Result<User, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = insert_user(&mut tx, new, now).await?;
        tx.commit().await?;
        self.user_by_id(&id)
            .await?
            .ok_or(StoreError::NotFound("user"))
    }

    /// Creates every user in one transaction with the event `created` describes for each: all of
    /// them, or (on any error) none. Each one's password goes into its history when
    /// `keep_history` > 0. The new users' ids, in order.
    pub async fn create_users(
        &self,
        users: &[NewUser],
        keep_history: usize,
        created: &(dyn Fn(&NewUser) -> NewEvent + Sync),
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(users.len());
        for new in users {
            let id = insert_user(&mut tx, new, now).await?;
            let event = NewEvent {
                user_id: Some(id.clone()),
                ..created(new)
            };
            insert_event(&mut *tx, &event, now).await?;
            if let (Some(hash), true) = (&new.password_hash, keep_history > 0) {
                sqlx::query(
                    "INSERT INTO password_history (user_id, password_hash, created_at) VALUES ($1, $2, $3)",
                )
                .bind(&id)
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Which of `logins` cannot be given to a new user (lower-cased): a user has it as username
    /// or email (any case), or it was a deleted user's username.
    pub async fn unavailable_logins(
        &self,
        logins: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut taken = std::collections::HashSet::new();
        for chunk in logins.chunks(200) {
            let lowered: Vec<String> = chunk.iter().map(|l| l.to_lowercase()).collect();
            let list = (1..=lowered.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT lower(username) FROM users WHERE lower(username) IN ({list}) \
                 UNION SELECT lower(email) FROM users WHERE lower(email) IN ({list}) \
                 UNION SELECT username FROM retired_usernames WHERE username IN ({list})"
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for login in &lowered {
                query = query.bind(login);
            }
            taken.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(taken)
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        self.with_roles(row).await
    }

    /// Finds a user by username or email, case-insensitively.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($1) \
             ORDER BY CASE WHEN lower(username) = lower($1) THEN 0 ELSE 1 END LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        self.with_roles(row).await
    }

    async fn with_roles(&self, row: Option<AnyRow>) -> Result<Option<User>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        let mut user = user_from_row(&row)?;
        user.roles = self.roles_of(&user.id).await?;
        Ok(Some(user))
    }

    /// A user's roles with their descriptions, by name.
    pub async fn role_descriptions_of(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.name, r.description FROM roles r JOIN user_roles u ON u.role = r.name \
             WHERE u.user_id = $1 ORDER BY r.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("description")?)))
            .collect()
    }

    pub async fn roles_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let roles =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(roles)
    }

    /// Users matching `filter`, by username, and how many match in all.
    pub async fn search_users(&self, filter: &UserFilter) -> Result<(Vec<User>, i64), StoreError> {
        let pattern = filter.text.as_ref().map(|t| {
            let escaped = t
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let status = filter.status.map(UserStatus::as_str);
        let condition = "($1 IS NULL OR status = $1) \
             AND ($2 IS NULL OR EXISTS (SELECT 1 FROM user_roles ur WHERE ur.user_id = users.id AND ur.role = $2)) \
             AND ($3 IS NULL OR lower(username) LIKE $3 ESCAPE '\\' OR lower(email) LIKE $3 ESCAPE '\\' \
                  OR lower(given_name) LIKE $3 ESCAPE '\\' OR lower(surname) LIKE $3 ESCAPE '\\')";
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users WHERE {condition}"))
                .bind(status)
                .bind(filter.role.as_deref())
                .bind(pattern.as_deref())
                .fetch_one(&self.pool)
                .await?;
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {condition} ORDER BY {} LIMIT $4 OFFSET $5",
            filter.sort.order_by()
        );
        let rows = sqlx::query(&sql)
            .bind(status)
            .bind(filter.role.as_deref())
            .bind(pattern.as_deref())
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(&self.pool)
            .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            let mut user = user_from_row(&row)?;
            user.roles = self.roles_of(&user.id).await?;
            users.push(user);
        }
        Ok((users, total))
    }

    pub async fn list_users(&self, limit: i64, offset: i64) -> Result<Vec<User>, StoreError> {
        let filter = UserFilter {
            limit,
            offset,
            ..UserFilter::default()
        };
        Ok(self.search_users(&filter).await?.0)
    }

    /// Changes profile fields; `None` leaves a field as it is.
    pub async fn update_profile(
        &self,
        user_id: &str,
        update: &ProfileUpdate,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(email) = &update.email {
            validate_email(email)?;
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT id FROM users WHERE (lower(email) = lower($1) OR lower(username) = lower($1)) \
                 AND id <> $2",
            )
            .bind(email)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict("email"));
            }
        }
        let done = sqlx::query(
            "UPDATE users SET email = COALESCE($1, email), given_name = COALESCE($2, given_name), \
             surname = COALESCE($3, surname), custom_data = COALESCE($4, custom_data), updated_at = $5 \
             WHERE id = $6",
        )
        .bind(update.email.as_deref())
        .bind(update.given_name.as_deref())
        .bind(update.surname.as_deref())
        .bind(update.custom_data.as_ref().map(|v| v.to_string()))
        .bind(now)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_write(e, "email"))?;
        self.require_one(done.rows_affected())?;
        if update.email.is_some() {
            // Links mailed to the old address stop working.
            sqlx::query(
                "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Replaces a hash with a re-hash of the same password (new parameters); sessions stay valid.
    pub async fn upgrade_password_hash(
        &self,
        user_id: &str,
        old: &str,
        new: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
            .bind(new)
            .bind(user_id)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_status(
        &self,
        user_id: &str,
        status: UserStatus,
        now: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE users SET status = $1, updated_at = $2, session_epoch = session_epoch + 1 WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        self.require_one(done.rows_affected())?;
        if status != UserStatus::Enabled {
            self.delete_sessions_of(user_id).await?;
        }
        Ok(())
    }

    pub async fn add_role(&self, user_id: &str, role: &str, now: i64) -> Result<bool, StoreError> {
        validate_role(role)?;
        let mut tx = self.pool.begin().await?;
        ensure_role(&mut tx, role, now).await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 AND role = $2")
                .bind(user_id)
                .bind(role)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(user_id)
            .bind(role)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                    StoreError::NotFound("user")
                }
                other => StoreError::Database(other),
            })?;
        bump_epoch(&mut tx, user_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn remove_role(
        &self,
        user_id: &str,
        role: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
            .bind(user_id)
            .bind(role)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        bump_epoch(&mut tx, user_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn set_locked_until(
        &self,
        user_id: &str,
        until: Option<i64>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2")
            .bind(until)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        self.require_one(done.rows_affected())
    }

    /// Deletes a user; the username is retired for good.
    pub async fn delete_user(&self, user_id: &str, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO retired_usernames (username, retired_at) \
             SELECT lower(username), $2 FROM users WHERE id = $1 \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        self.require_one(done.rows_affected())?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every session of a user, here and (through the epoch) on every instance.
    pub async fn revoke_sessions(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        bump_epoch(&mut tx, user_id, now).await?;
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn delete_sessions_of(&self, user_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn require_one(&self, rows: u64) -> Result<(), StoreError> {
        if rows == 0 {
            Err(StoreError::NotFound("user"))
        } else {
            Ok(())
        }
    }
}

/// Inserts one user (and its roles, creating missing ones) inside `tx`; the new id.
async fn insert_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: &NewUser,
    now: i64,
) -> Result<String, StoreError> {
    validate_username(&new.username)?;
    validate_email(&new.email)?;
    for role in &new.roles {
        validate_role(role)?;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let status = new.status.unwrap_or(UserStatus::Enabled);
    // A login names a user by username or email, so neither may equal another user's
    // username or email: else one account could shadow another's login.
    let taken: Option<String> = sqlx::query_scalar(
        "SELECT CASE WHEN lower(username) = lower($1) OR lower(email) = lower($1) \
         THEN 'username' ELSE 'email' END FROM users \
         WHERE lower(username) IN (lower($1), lower($2)) OR lower(email) IN (lower($1), lower($2)) \
         ORDER BY 1 DESC LIMIT 1",
    )
    .bind(&new.username)
    .bind(&new.email)
    .fetch_optional(&mut **tx)
    .await?;
    match taken.as_deref() {
        Some("username") => return Err(StoreError::Conflict("username")),
        Some(_) => return Err(StoreError::Conflict("email")),
        None => {}
    }
    let retired: Option<String> =
        sqlx::query_scalar("SELECT username FROM retired_usernames WHERE username = lower($1)")
            .bind(&new.username)
            .fetch_optional(&mut **tx)
            .await?;
    if retired.is_some() {
        return Err(StoreError::InUse(format!(
            "username {:?} belonged to a deleted account and is not given out again \
             (objects keyed by the username would pass to the new account)",
            new.username
        )));
    }
    sqlx::query(
        "INSERT INTO users (id, username, email, given_name, surname, status, password_hash, \
         password_changed_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(&new.username)
    .bind(&new.email)
    .bind(&new.given_name)
    .bind(&new.surname)
    .bind(status.as_str())
    .bind(new.password_hash.as_deref())
    .bind(new.password_hash.as_ref().map(|_| now))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::from_write(e, "username or email"))?;
    for role in &new.roles {
        ensure_role(tx, role, now).await?;
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(&id)
            .bind(role)
            .execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_write(e, "role assignment"))?;
    }
    Ok(id)
}

async fn ensure_role(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    role: &str,
    now: i64,
) -> Result<(), StoreError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT name FROM roles WHERE name = $1")
        .bind(role)
        .fetch_optional(&mut **tx)
        .await?;
    if exists.is_none() {
        sqlx::query("INSERT INTO roles (name, created_at) VALUES ($1, $2)")
            .bind(role)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn bump_epoch(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE users SET session_epoch = session_epoch + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

/// A role and how many users hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub name: String,
    pub description: String,
    pub users: i64,
    pub created_at: i64,
}

impl Store {
    pub async fn count_role_holders(&self, role: &str) -> Result<i64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_roles WHERE role = $1")
            .bind(role)
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    pub async fn roles(&self) -> Result<Vec<RoleInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.name, r.description, r.created_at, \
             (SELECT COUNT(*) FROM user_roles ur WHERE ur.role = r.name) AS users \
             FROM roles r ORDER BY r.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoleInfo {
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                    users: row.try_get("users")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn create_role(
        &self,
        name: &str,
        description: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        validate_role(name)?;
        sqlx::query("INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(description)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::from_write(e, "role"))?;
        Ok(())
    }

    /// Deletes a role; refused while users hold it unless `force`, which also takes it from them
    /// (ending their sessions).
    pub async fn delete_role(&self, name: &str, force: bool, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let holders: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM user_roles WHERE role = $1")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        if !holders.is_empty() && !force {
            return Err(StoreError::InUse(format!(
                "role {name:?} is held by {} user(s); remove it from them first or force",
                holders.len()
            )));
        }
        for user_id in &holders {
            bump_epoch(&mut tx, user_id, now).await?;
        }
        sqlx::query("DELETE FROM user_roles WHERE role = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("role"));
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_that_could_not_be_a_header_value_are_refused() {
        assert!(validate_email("ann@example.com").is_ok());
        assert!(validate_email("ann\u{1}@example.com").is_err());
        assert!(validate_email("ann@example.com\u{7f}").is_err());
        assert!(validate_email("ann @example.com").is_err());
        assert!(validate_email("ann@localhost").is_err());
    }
}
