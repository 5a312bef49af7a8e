//! API integration tests: the real server on port 0, spoken to over HTTP.

mod admin;
mod errors;
mod feedback;
mod helpers;
mod lifecycle;
mod live_quality;
mod metrics;
mod predict;
mod readme;
