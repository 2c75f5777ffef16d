//! `coffer-chat` owns Coffer's llama.cpp engines: GGUF models through llama.cpp
//! (`llama-cpp-2`, a dependency of this crate only), for chat behind the [`ChatEngine`]
//! trait and for sentence embeddings ([`embed`]). A [`ChatEngine`]
//! takes [`ChatJob`]s and streams [`ChatEvent`]s back; the llama.cpp implementation
//! ([`llama::LlamaEngine`]) runs one thread per model version with continuous batching
//! over `slots` sequences and reuses prompt prefixes exactly ([`prefix`],
//! [`prefix_store`]), with as many layers on the GPU as fit ([`gpu_plan`]).
//!
//! It owns: the engine and its [`ChatSettings`]; [`prompt::render`], the one way a
//! conversation becomes tokens, used by serving and by the evaluation gate ([`eval`])
//! alike; generated text assembled against stop strings ([`text`]); `response_format`
//! schemas made into grammars safely ([`grammar`]); and the chat metric families
//! ([`ChatMetrics`]). It does not own what ties a version to the daemon (the served
//! versions, request counters, readiness, the HTTP API): cofferd's `chat` module does.

mod backend;
pub mod embed;
mod engine;
pub mod eval;
pub mod gpu_plan;
pub mod grammar;
pub mod job;
pub mod llama;
pub mod metrics;
pub mod prefix;
pub mod prefix_store;
pub mod prompt;
mod settings;
pub mod text;

pub use engine::{ChatEngine, LoadError, SubmitError};
pub use job::{ChatEvent, ChatFailure, ChatJob, Finish, GenParams, Message, Prompt, Role};
pub use metrics::{ChatMetrics, ChatModelMetrics};
pub use settings::{ChatSettings, GpuLayers};
