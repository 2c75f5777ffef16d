//! The [`ChatEngine`] trait: what the HTTP layer needs from a loaded chat model version,
//! and why loading one or queueing a job can fail.

use std::path::PathBuf;

use crate::job::{ChatFailure, ChatJob, Message, Prompt};

/// Why a chat model version could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Verify(#[from] coffer_models::verify::VerifyError),
    #[error("{0} is not a chat model")]
    NotChat(String),
    #[error("{0} is not an embedding model")]
    NotEmbedding(String),
    #[error("model file {0} is missing")]
    Missing(PathBuf),
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    #[error("llama.cpp cannot load the model: {0}")]
    Model(String),
    #[error("the GGUF has no chat template and the manifest names none ([chat] template)")]
    NoTemplate,
    #[error("llama.cpp cannot create a context: {0}")]
    Context(String),
    #[error("engine thread: {0}")]
    Thread(String),
    #[error("{0} is listed twice")]
    Duplicate(String),
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the model's queue is full")]
    QueueFull,
    #[error("the model's engine has stopped")]
    Stopped,
}

/// A chat engine for one model version.
pub trait ChatEngine: Send + Sync + std::fmt::Debug {
    /// The prompt's tokens for `messages`: the chat template applied, special tokens
    /// parsed only in the template's own text, the length checked. Blocking (tokenizing
    /// a large prompt takes a while): call it off the async workers.
    fn prompt(&self, messages: &[Message]) -> Result<Prompt, ChatFailure>;
    /// Queues a job; its events arrive on the job's channel.
    fn submit(&self, job: ChatJob) -> Result<(), SubmitError>;
    /// Prompt plus completion tokens one request may use.
    fn context_per_request(&self) -> usize;
    fn slots(&self) -> usize;
}
