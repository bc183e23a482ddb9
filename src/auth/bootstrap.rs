//! The first administrator: on a database where nobody holds the role `admin`, user `admin` is
//! created with that role, so a newcomer can log in to a fresh installation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde_json::json;

use super::password::{PasswordError, Passwords};
use crate::config::BootstrapSettings;
use crate::store::{NewEvent, NewUser, Store, StoreError, UserStatus};

pub const ADMIN_ROLE: &str = "admin";
const ADMIN_USER: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// What happened: nothing, or the admin was created (with the generated password, if any).
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    NotNeeded,
    /// A user named `admin` exists without the role; nothing was changed.
    NameTaken,
    Created {
        generated_password: Option<String>,
    },
}

pub async fn bootstrap_admin(
    store: &Store,
    settings: &BootstrapSettings,
    passwords: &Passwords,
    now: i64,
) -> Result<Bootstrap, BootstrapError> {
    if !settings.admin || store.count_role_holders(ADMIN_ROLE).await? > 0 {
        return Ok(Bootstrap::NotNeeded);
    }
    if store.user_by_login(ADMIN_USER).await?.is_some() {
        return Ok(Bootstrap::NameTaken);
    }
    let (password, generated) = match &settings.admin_password {
        Some(password) => (password.clone(), false),
        None => {
            let mut bytes = [0u8; 18];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            (URL_SAFE_NO_PAD.encode(bytes), true)
        }
    };
    let created = store
        .create_user(
            &NewUser {
                username: ADMIN_USER.into(),
                email: "admin@postern.invalid".into(),
                status: Some(UserStatus::Enabled),
                password_hash: Some(passwords.hash(password.clone()).await?),
                roles: vec![ADMIN_ROLE.into()],
                ..NewUser::default()
            },
            now,
        )
        .await;
    let user = match created {
        Ok(user) => user,
        // Another instance starting on the same database got there first.
        Err(crate::store::StoreError::Conflict(_)) => return Ok(Bootstrap::NotNeeded),
        Err(e) => return Err(e.into()),
    };
    let event = NewEvent {
        kind: "user.bootstrap_admin".into(),
        user_id: Some(user.id),
        actor: Some("postern".into()),
        detail: json!({"generated_password": generated}),
        ..NewEvent::default()
    };
    store.record_event(&event, now).await?;
    Ok(Bootstrap::Created {
        generated_password: generated.then_some(password),
    })
}
