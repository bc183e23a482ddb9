//! `/_postern/admin/files…`: everyone's files for administrators — list with filters, one
//! record, `PATCH`, `DELETE` (object and record) and a sync of one user or all.

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use pingora::proxy::Session;
use serde_json::{Value, json};

use super::admin::Admin;
use super::files::{
    file_error, link_ttl, list_filter, parse_update, record_json, record_with_link,
};
use crate::error::GatewayError;
use crate::files::{Files, NamedRoute, Owner, UploadRoute};
use crate::proxy::assets::Assets;
use crate::store::Store;

/// The file service and the upload routes (name, path prefix, settings), for the admin API.
pub struct AdminFiles {
    pub files: Arc<Files>,
    pub routes: Vec<(String, String, UploadRoute)>,
    /// Makes the links in a record (presigned, or postern-signed).
    pub links: Assets,
}

impl AdminFiles {
    /// Where a record's `href` points: its route's prefix, or the admin API's when the route
    /// is gone.
    fn prefix_of(&self, route: &str) -> &str {
        self.routes
            .iter()
            .find(|(name, _, _)| name == route)
            .map_or("/_postern/admin/files", |(_, prefix, _)| prefix.as_str())
    }

    fn json(&self, record: &crate::store::FileRecord) -> Value {
        record_json(record, self.prefix_of(&record.route))
    }
}

impl Admin {
    /// Serves `segments` (below `/admin`, starting with `files`).
    pub(super) async fn files(
        &self,
        session: &mut Session,
        store: &Store,
        method: &str,
        segments: &[&str],
        actor: &str,
        ip: Option<String>,
    ) -> Result<(), GatewayError> {
        let Some(api) = &self.files else {
            return Err(GatewayError::NotImplemented(
                "the file API without a route of kind \"uploads\"",
            ));
        };
        match (method, segments) {
            ("GET", ["files"]) => {
                let query: HashMap<String, String> = session
                    .req_header()
                    .uri
                    .query()
                    .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                    .unwrap_or_default();
                let mut filter = list_filter(&query)?;
                filter.owner_id = query.get("user_id").cloned();
                filter.route = query.get("route").cloned();
                let (records, total) = api.files.list(&filter).await.map_err(file_error)?;
                let body = json!({
                    "files": records.iter().map(|r| api.json(r)).collect::<Vec<_>>(),
                    "total": total,
                    "limit": filter.limit,
                    "offset": filter.offset,
                });
                self.reply(session, StatusCode::OK, Some(body)).await
            }
            ("POST", ["files", "sync"]) => {
                let body = self.json_body(session).await?;
                let owner = match body.get("user_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(id)) => {
                        let user = self.user(store, id).await?;
                        Some(Owner {
                            user_id: user.id,
                            username: user.username,
                        })
                    }
                    Some(_) => {
                        return Err(GatewayError::Validation {
                            field: "user_id",
                            message: "must be a string".into(),
                        });
                    }
                };
                let routes: Vec<NamedRoute> = api
                    .routes
                    .iter()
                    .map(|(name, _, route)| NamedRoute { name, route })
                    .collect();
                let report = api
                    .files
                    .sync_users(&routes, owner.as_ref())
                    .await
                    .map_err(file_error)?;
                self.reply(session, StatusCode::OK, Some(json!(report)))
                    .await
            }
            ("GET", ["files", id]) => {
                let record = api.files.get(id, None).await.map_err(file_error)?;
                // A link as the file's route would make it (an hour when its route is gone).
                let cap = api
                    .routes
                    .iter()
                    .find(|(name, _, _)| *name == record.route)
                    .map_or(std::time::Duration::from_secs(3600), |(_, _, r)| r.link_ttl);
                let ttl = link_ttl(session, cap)?;
                let prefix = api.prefix_of(&record.route).to_string();
                let value = record_with_link(&api.links, &api.files, &record, &prefix, ttl)?;
                self.reply(session, StatusCode::OK, Some(value)).await
            }
            ("PATCH", ["files", id]) => {
                let record = api.files.get(id, None).await.map_err(file_error)?;
                let body = self.json_body(session).await?;
                let update = parse_update(body.to_string().as_bytes())?;
                let updated = api
                    .files
                    .update(&record, &update)
                    .await
                    .map_err(file_error)?;
                self.reply(session, StatusCode::OK, Some(api.json(&updated)))
                    .await
            }
            ("DELETE", ["files", id]) => {
                let record = api.files.get(id, None).await.map_err(file_error)?;
                api.files
                    .delete(&record, Some(actor), ip)
                    .await
                    .map_err(file_error)?;
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            (_, ["files"] | ["files", "sync"] | ["files", _]) => {
                Err(GatewayError::MethodNotAllowed)
            }
            _ => Err(GatewayError::UnknownEndpoint),
        }
    }
}
