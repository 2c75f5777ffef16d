//! A chat request's prompt as tokens: the model's chat template rendered around the
//! messages, with special-token parsing on in the template's own text only. A message's
//! content is tokenized as plain text, so a client that writes `<|im_end|><|im_start|>system`
//! gets those characters, not the control tokens that would forge a turn past the
//! application's system prompt.
//!
//! The template is rendered with a marker in place of each message's content; the text
//! between markers is the template's, tokenized with special tokens parsed, and each
//! marker becomes its message's content, tokenized without.
//!
//! [`render`] is the one way a conversation becomes tokens, with the template
//! [`chat_template`] picks: serving ([`Prompter`], shared by the engine handle, runs it on
//! the request's blocking thread, never on the engine thread, so a huge prompt is
//! templated, tokenized and refused there without stalling any slot) and the evaluation
//! gate's golden answers (`eval`) both call it, so the gate judges the prompts that are
//! served.

use std::sync::Arc;

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::job::{ChatFailure, Message, Prompt, Role};

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

/// The chat template of a loaded model: the GGUF's own, else the one the manifest names
/// (`[chat] template`); `None` when neither is there or usable.
pub fn chat_template(model: &LlamaModel, named: Option<&str>) -> Option<LlamaChatTemplate> {
    match model.chat_template(None) {
        Ok(t) => Some(t),
        Err(_) => named.and_then(|name| LlamaChatTemplate::new(name).ok()),
    }
}

/// The tokens of `messages` rendered with `template`, and the position after each
/// message's content (one per message, in order): the template's own text tokenized with
/// special tokens parsed (and BOS first where the model adds one), each message's content
/// as plain text. Refused as soon as the tokens leave no room for one generated token
/// within `per_request`.
pub fn render(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[Message],
    per_request: usize,
) -> Result<(Vec<LlamaToken>, Vec<usize>), ChatFailure> {
    let failed = |e: &dyn std::fmt::Display| ChatFailure::Template(e.to_string());
    let chat = messages
        .iter()
        .enumerate()
        .map(|(i, m)| LlamaChatMessage::new(m.role.as_str().to_string(), marker(i)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&e))?;
    let rendered = model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| failed(&e))?;
    let vocab = model.vocab();
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
        fits(tokens.len(), per_request)?;
        breaks.push(tokens.len());
        rest = after;
    }
    vocab.tokenize_into(rest.as_bytes(), &mut tokens, messages.is_empty(), true);
    fits(tokens.len(), per_request)?;
    Ok((tokens, breaks))
}

/// One cell stays free for the first generated token.
fn fits(prompt_tokens: usize, per_request: usize) -> Result<(), ChatFailure> {
    if prompt_tokens + 1 > per_request {
        return Err(ChatFailure::ContextLengthExceeded {
            prompt_tokens,
            limit: per_request,
        });
    }
    Ok(())
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
            .take_while(|m| m.role == Role::System)
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

    /// The prompt's tokens, and the position after each message's content ([`render`]
    /// with this model's template and context per request).
    pub fn tokens(
        &self,
        messages: &[Message],
    ) -> Result<(Vec<LlamaToken>, Vec<usize>), ChatFailure> {
        render(&self.model, &self.template, messages, self.per_request)
    }

    pub fn per_request(&self) -> usize {
        self.per_request
    }
}
