//! A chat request's prompt as tokens: the model's chat template rendered around the
//! messages, with special-token parsing on in the template's own text only. A message's
//! content is tokenized as plain text, so a client that writes `<|im_end|><|im_start|>system`
//! gets those characters, not the control tokens that would forge a turn past the
//! application's system prompt.
//!
//! The template is rendered with a marker in place of each message's content; the text
//! between markers is the template's, tokenized with special tokens parsed, and each
//! marker becomes its message's content, tokenized without. [`Prompter`] is shared by the
//! engine handle and runs on the request's blocking thread, never on the engine thread,
//! so a huge prompt is templated, tokenized and refused there without stalling any slot.

use std::sync::Arc;

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use super::job::{ChatFailure, Message, Prompt};

/// Renders and tokenizes prompts for one loaded model.
#[derive(Debug)]
pub struct Prompter {
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    /// Tokens one request may use (prompt and completion).
    per_request: usize,
}

/// A marker that no template writes: private-use characters around the message index.
fn marker(i: usize) -> String {
    format!("\u{E000}{i}\u{E001}")
}

impl Prompter {
    pub fn new(model: Arc<LlamaModel>, template: LlamaChatTemplate, per_request: usize) -> Self {
        Prompter {
            model,
            template,
            per_request,
        }
    }

    /// The prompt's tokens and where each message's content ends; refused when it
    /// leaves no room for one generated token.
    pub fn prompt(&self, messages: &[Message]) -> Result<Prompt, ChatFailure> {
        let (tokens, message_ends) = self.tokens(messages)?;
        let len = tokens.len();
        let mut breaks: Vec<usize> = message_ends
            .iter()
            .copied()
            .filter(|&b| b > 0 && b < len)
            .collect();
        breaks.dedup();
        let leading_system = messages
            .iter()
            .take_while(|m| m.role == super::job::Role::System)
            .count();
        let shared = leading_system
            .checked_sub(1)
            .map(|i| message_ends[i])
            .filter(|&b| b < len)
            .unwrap_or(0);
        Ok(Prompt {
            tokens: tokens.into_iter().map(|t| t.0).collect(),
            breaks,
            shared,
        })
    }

    /// The prompt's tokens, and the position after each message's content (one per
    /// message, in order).
    pub fn tokens(
        &self,
        messages: &[Message],
    ) -> Result<(Vec<LlamaToken>, Vec<usize>), ChatFailure> {
        let template = |e: &dyn std::fmt::Display| ChatFailure::Template(e.to_string());
        let chat = messages
            .iter()
            .enumerate()
            .map(|(i, m)| LlamaChatMessage::new(m.role.as_str().to_string(), marker(i)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| template(&e))?;
        let rendered = self
            .model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| template(&e))?;
        let vocab = self.model.vocab();
        let mut rest = rendered.as_str();
        let mut tokens = Vec::new();
        let mut breaks = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let mark = marker(i);
            let (own, after) = rest.split_once(mark.as_str()).ok_or_else(|| {
                ChatFailure::Template(
                    "the chat template does not place every message once, in order".into(),
                )
            })?;
            vocab.tokenize_into(own.as_bytes(), &mut tokens, i == 0, true);
            vocab.tokenize_into(m.content.as_bytes(), &mut tokens, false, false);
            self.check(tokens.len())?;
            breaks.push(tokens.len());
            rest = after;
        }
        vocab.tokenize_into(rest.as_bytes(), &mut tokens, messages.is_empty(), true);
        self.check(tokens.len())?;
        Ok((tokens, breaks))
    }

    /// One cell stays free for the first generated token.
    fn check(&self, prompt_tokens: usize) -> Result<(), ChatFailure> {
        if prompt_tokens + 1 > self.per_request {
            return Err(ChatFailure::ContextLengthExceeded {
                prompt_tokens,
                limit: self.per_request,
            });
        }
        Ok(())
    }

    pub fn per_request(&self) -> usize {
        self.per_request
    }
}
