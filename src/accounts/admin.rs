//! Account administration: the one service layer the admin API and the command line both call.
//! Each change is applied through the store and written as an event naming who made it.

use serde_json::{Value, json};

use super::policy::{Identity, PasswordPolicy, PolicyViolation};
use crate::auth::{PasswordError, Passwords};
use crate::store::{
    NewEvent, NewUser, PasswordChange, ProfileUpdate, Store, StoreError, User, UserStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
}

/// Who makes a change: an admin's username, or `cli:USER` for the command line.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub ip: Option<String>,
}

/// A user to create, with a plain-text password that is hashed here.
#[derive(Debug, Clone, Default)]
pub struct UserDraft {
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub surname: String,
    pub status: Option<UserStatus>,
    pub password: Option<String>,
    pub roles: Vec<String>,
}

pub struct Accounts<'a> {
    pub store: &'a Store,
    pub passwords: &'a Passwords,
    pub policy: &'a PasswordPolicy,
    pub actor: Actor,
    pub now: i64,
}

impl Accounts<'_> {
    pub(super) async fn event(
        &self,
        kind: &str,
        user_id: Option<&str>,
        detail: Value,
    ) -> Result<(), AccountError> {
        let event = NewEvent {
            kind: kind.to_string(),
            user_id: user_id.map(str::to_owned),
            actor: Some(self.actor.name.clone()),
            ip: self.actor.ip.clone(),
            user_agent: None,
            detail,
        };
        self.store.record_event(&event, self.now).await?;
        Ok(())
    }

    /// The policy's rules (history aside: an admin does not know the user's old passwords),
    /// then the hash.
    async fn hash(&self, password: String, who: Identity<'_>) -> Result<String, AccountError> {
        self.policy
            .check_with_strength(self.passwords, &password, &who)
            .await??;
        Ok(self.passwords.hash(password).await?)
    }

    pub async fn create_user(&self, draft: UserDraft) -> Result<User, AccountError> {
        let who = Identity {
            username: &draft.username,
            email: &draft.email,
            given_name: &draft.given_name,
            surname: &draft.surname,
        };
        let password_hash = match draft.password.clone() {
            Some(password) => Some(self.hash(password, who).await?),
            None => None,
        };
        let new = NewUser {
            username: draft.username,
            email: draft.email,
            given_name: draft.given_name,
            surname: draft.surname,
            status: draft.status,
            password_hash,
            roles: draft.roles,
        };
        let user = self.store.create_user(&new, self.now).await?;
        if let Some(hash) = &new.password_hash {
            self.store
                .remember_password(&user.id, hash, self.policy.history, self.now)
                .await?;
        }
        let detail = json!({"username": user.username, "roles": user.roles});
        self.event("user.created", Some(&user.id), detail).await?;
        Ok(user)
    }

    pub async fn update_profile(
        &self,
        user_id: &str,
        update: &ProfileUpdate,
    ) -> Result<(), AccountError> {
        self.store.update_profile(user_id, update, self.now).await?;
        let changed: Vec<&str> = [
            ("email", update.email.is_some()),
            ("given_name", update.given_name.is_some()),
            ("surname", update.surname.is_some()),
            ("custom_data", update.custom_data.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        self.event("user.updated", Some(user_id), json!({"changed": changed}))
            .await
    }

    /// Also ends the user's sessions.
    pub async fn set_password(&self, user: &User, password: String) -> Result<(), AccountError> {
        let who = Identity {
            username: &user.username,
            email: &user.email,
            given_name: &user.given_name,
            surname: &user.surname,
        };
        let hash = self.hash(password, who).await?;
        let change = PasswordChange {
            user_id: &user.id,
            hash: &hash,
            keep_history: self.policy.history,
            verifies: false,
        };
        self.store.change_password(&change, self.now).await?;
        let user_id = user.id.as_str();
        self.event("user.password_set", Some(user_id), json!({}))
            .await
    }

    /// Anything but `enabled` also ends the user's sessions.
    pub async fn set_status(&self, user_id: &str, status: UserStatus) -> Result<(), AccountError> {
        self.store.set_status(user_id, status, self.now).await?;
        let kind = match status {
            UserStatus::Enabled => "user.enabled",
            UserStatus::Disabled => "user.disabled",
            UserStatus::Unverified => "user.unverified",
        };
        self.event(kind, Some(user_id), json!({})).await
    }

    pub async fn add_role(&self, user_id: &str, role: &str) -> Result<bool, AccountError> {
        let added = self.store.add_role(user_id, role, self.now).await?;
        if added {
            self.event("user.role_added", Some(user_id), json!({"role": role}))
                .await?;
        }
        Ok(added)
    }

    pub async fn remove_role(&self, user_id: &str, role: &str) -> Result<bool, AccountError> {
        let removed = self.store.remove_role(user_id, role, self.now).await?;
        if removed {
            self.event("user.role_removed", Some(user_id), json!({"role": role}))
                .await?;
        }
        Ok(removed)
    }

    pub async fn unlock(&self, user_id: &str) -> Result<(), AccountError> {
        self.store.set_locked_until(user_id, None).await?;
        self.event("user.unlocked", Some(user_id), json!({})).await
    }

    pub async fn delete_user(&self, user: &User) -> Result<(), AccountError> {
        self.store.delete_user(&user.id, self.now).await?;
        self.event(
            "user.deleted",
            Some(&user.id),
            json!({"username": user.username}),
        )
        .await
    }

    pub async fn revoke_sessions(&self, user_id: &str) -> Result<u64, AccountError> {
        let ended = self.store.revoke_sessions(user_id, self.now).await?;
        self.event(
            "user.sessions_revoked",
            Some(user_id),
            json!({"sessions": ended}),
        )
        .await?;
        Ok(ended)
    }

    pub async fn revoke_session(&self, user_id: &str, handle: &str) -> Result<bool, AccountError> {
        let ended = self.store.delete_user_session(user_id, handle).await?;
        if ended {
            self.event(
                "user.session_revoked",
                Some(user_id),
                json!({"session": handle}),
            )
            .await?;
        }
        Ok(ended)
    }

    pub async fn create_role(&self, name: &str, description: &str) -> Result<(), AccountError> {
        self.store.create_role(name, description, self.now).await?;
        self.event("role.created", None, json!({"role": name}))
            .await
    }

    pub async fn delete_role(&self, name: &str, force: bool) -> Result<(), AccountError> {
        self.store.delete_role(name, force, self.now).await?;
        self.event("role.deleted", None, json!({"role": name, "forced": force}))
            .await
    }
}
