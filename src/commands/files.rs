//! `postern files sync`: reads every user's objects (or one user's) back into file records.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use clap::Subcommand;

use super::users::{CommandError, find, with_store};
use crate::auth::SystemClock;
use crate::config::RouteTarget;
use crate::files::{FileError, Files, NamedRoute, Owner};
use crate::images::Images;
use crate::metrics::Metrics;
use crate::objects::ObjectStores;

#[derive(Subcommand)]
pub enum FilesCommand {
    /// Add records for objects that have none, remove records whose object is gone, refresh
    /// sizes and ETags: for every user on every upload route with a per-user key prefix.
    Sync {
        /// Only this user (username or email).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn setup(e: impl std::fmt::Display) -> CommandError {
    CommandError::Setup(e.to_string())
}

pub fn run(config_path: Option<&Path>, command: FilesCommand) -> ExitCode {
    with_store(config_path, |settings, store| async move {
        let FilesCommand::Sync { user, json } = command;
        let routes: Vec<(String, crate::files::UploadRoute)> = settings
            .routes
            .iter()
            .filter_map(|r| match &r.target {
                RouteTarget::Uploads(u) => Some((r.name.clone(), (**u).clone())),
                _ => None,
            })
            .collect();
        if routes.is_empty() {
            return Err(CommandError::Usage(
                "no route of kind \"uploads\" in this config".into(),
            ));
        }
        let owner = match &user {
            Some(name) => {
                let user = find(&store, name).await?;
                Some(Owner {
                    user_id: user.id,
                    username: user.username,
                })
            }
            None => None,
        };
        let metrics = Arc::new(Metrics::new().map_err(setup)?);
        let objects = Arc::new(ObjectStores::new(&settings.stores, &metrics));
        for s3 in objects.s3().filter(|s3| s3.uses_credential_chain()) {
            let chain = s3.credential_chain().await;
            s3.refresh_credentials(&chain)
                .await
                .map_err(|e| CommandError::Setup(format!("store {}: {e}", s3.name())))?;
        }
        let files = Files::new(
            Arc::new(ArcSwapOption::from_pointee(store.clone())),
            objects,
            Arc::new(Images::new(settings.images.clone(), metrics.clone())),
            Arc::new(SystemClock),
            metrics,
        );
        let named: Vec<NamedRoute> = routes
            .iter()
            .map(|(name, route)| NamedRoute { name, route })
            .collect();
        let report = files
            .sync_users(&named, owner.as_ref())
            .await
            .map_err(|e| match e {
                FileError::SyncUnavailable(message) => CommandError::Usage(message.into()),
                other => CommandError::Setup(other.to_string()),
            })?;
        if json {
            println!("{}", serde_json::json!(report));
        } else {
            println!(
                "added {}, removed {}, updated {}, unchanged {}",
                report.added, report.removed, report.updated, report.unchanged
            );
        }
        Ok(())
    })
}
