//! What the HTTP layer hands a chat engine ([`ChatJob`]) and what it gets back, event
//! by event ([`ChatEvent`]). Dropping the receiver cancels the job: the engine sees it
//! before its next decode step and frees the sequence's slot and KV cells.

use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// Upper bound asked for; clamped to what the context leaves after the prompt.
    pub max_tokens: Option<u32>,
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    pub stop: Vec<String>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// A GBNF grammar the output must follow (`response_format`).
    pub grammar: Option<String>,
}

impl GenParams {
    /// Whether the answer must be JSON: a grammar comes only from `response_format`
    /// `json_object` or `json_schema` (`api::chat::request`).
    pub fn expects_json(&self) -> bool {
        self.grammar.is_some()
    }
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            max_tokens: None,
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            grammar: None,
        }
    }
}

/// A prompt as the engine takes it: its tokens and where its messages end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    /// llama.cpp token ids, within the context per request.
    pub tokens: Vec<i32>,
    /// The token position right after each message's content, ascending, each above 0
    /// and below `tokens.len()`. The engine never decodes a prompt chunk across one, so
    /// the KV of a prompt's leading messages is the same whatever follows them: what
    /// lets a later prompt that starts with the same messages reuse it exactly.
    pub breaks: Vec<usize>,
    /// Where the leading system message(s) end (a break), 0 without one: the part of
    /// the prompt that is the application's, not a customer's, and so may be kept in
    /// the state directory across restarts (`chat.prefix_cache_bytes`).
    pub shared: usize,
}

/// A request for the engine: its prompt already tokenized (`ChatEngine::prompt`, off the
/// engine thread).
#[derive(Debug)]
pub struct ChatJob {
    pub prompt: Prompt,
    pub params: GenParams,
    pub events: UnboundedSender<ChatEvent>,
    pub enqueued: Instant,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End of turn or a stop string.
    Stop,
    /// `max_tokens` or the end of the context.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Why a job was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatFailure {
    #[error(
        "this model's context is {limit} tokens per request, and the messages take {prompt_tokens}; shorten them"
    )]
    ContextLengthExceeded { prompt_tokens: usize, limit: usize },
    #[error("the chat template could not be applied: {0}")]
    Template(String),
    #[error("response_format could not be turned into a grammar: {0}")]
    Grammar(String),
    #[error("generation failed: {0}")]
    Engine(String),
}

/// What the engine reports, in order: `Started`, any number of `Delta`s, then `Done`;
/// or a single `Failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    Started {
        prompt_tokens: usize,
        max_tokens: usize,
    },
    Delta(String),
    Done {
        finish: Finish,
        prompt_tokens: usize,
        /// Prompt tokens whose KV came from the prefix cache (OpenAI's
        /// `usage.prompt_tokens_details.cached_tokens`).
        cached_tokens: usize,
        completion_tokens: usize,
    },
    Failed(ChatFailure),
}
