//! cofferd's integration tests: each starts the real daemon on 127.0.0.1:0 with real
//! TLS, real sled and real `cofferctl`, and talks to it as a client would.

mod common;

mod admin_roles;
mod admission;
mod attributes;
mod audit;
mod auth;
mod chat;
mod chat_beside_scoring;
mod chat_hostile;
mod chat_prefix;
mod compat;
mod config;
mod connections;
mod dashboards;
mod decisions;
mod devmode;
mod drift;
mod drip_host;
mod embeddings;
mod engine_faults;
mod explain;
mod faults;
mod fleet;
mod fleet_attacks;
mod fleet_halts;
mod fleet_scale;
mod fleet_status;
mod fleet_windows;
mod gpu;
mod gpu_chat;
mod health;
mod lifecycle;
mod models;
mod models_crash;
mod models_swap;
mod nginx;
mod prometheus;
mod scoring;
mod slow_readers;
mod telemetry;
mod tls;
