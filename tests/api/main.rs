//! API integration tests: the real server on port 0, spoken to over HTTP.

mod admin;
mod auto_promote;
mod body_budget;
mod challenger_live;
mod connections;
mod direct;
mod errors;
mod examples;
mod feedback;
mod feedback_auth;
mod feedback_log;
mod half_close;
mod helpers;
mod hostile;
mod learn;
mod lifecycle;
mod live_quality;
mod metrics;
mod models;
mod overload;
mod poll;
mod predict;
mod raw;
mod registry;
mod reload_files;
mod v2;
