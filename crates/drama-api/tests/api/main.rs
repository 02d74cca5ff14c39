//! drama-api in process: every route through the real route table and middleware.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod anonymous_rate;
mod auth;
mod console;
mod cover_words;
mod credits;
mod cutover;
mod embedding;
mod error_table;
mod forms;
mod graphql;
mod graphql_job_nodes;
mod graphql_limits;
mod idempotency;
mod jobs;
mod keys;
mod library;
mod library_pages;
mod media_round_trip;
mod media_urls;
mod old_client_lists;
mod old_client_values;
mod old_clients;
mod openapi;
mod postgres;
mod pricing;
mod quotas;
mod rest;
mod shared_secrets;
mod stream_auth;
mod streams;
mod support;
mod tenancy;
mod upload_bounds;
mod websocket;
mod websocket_limits;
