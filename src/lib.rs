//! postern: a reverse-proxy asset gateway on Pingora.
//!
//! [`server::build_server`] turns validated [`config::Settings`] into a Pingora server; the
//! binary and the integration tests both go through it.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounts;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod error;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
pub mod images;
pub mod mail;
pub mod metrics;
pub mod objects;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use server::{BuildError, Built, ServeOptions, build_server, build_server_with_clock};

/// The Pingora version postern is built on, for embedders and tests that drive the server.
pub use pingora;
