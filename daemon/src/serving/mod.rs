//! The serving layer between the HTTP handlers and the engines: policy that every API
//! applies the same way lives here once, so the Open Inference Protocol and the OpenAI
//! handlers cannot drift apart. Today: which loaded version answers a request while its
//! GPU is failed ([`gpu_route`]), with one table of refusals ([`ServeError`]) that the
//! API layer maps to statuses.

pub mod gpu_route;

pub use gpu_route::{FALLBACK_HEADER, Routed, ServeError, route};
