//! Prefix reuse inside the engine: which slot a new prompt takes and how much of it is
//! already there ([`super::Engine::place`]), what a freed slot keeps ([`Residue`]), and
//! the system prompts saved to and loaded from the prefix store. The rules that make a
//! reuse exact are in [`crate::prefix`].

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::Engine;
use crate::job::Prompt;
use crate::prefix::{chunk_ends, reusable};

/// The prompt KV a free slot still holds.
pub(super) struct Residue {
    /// Its tokens: prompt chunks only, never generated tokens.
    pub(super) tokens: Vec<i32>,
    /// Their chunk ends.
    pub(super) ends: Vec<usize>,
    pub(super) used: Instant,
}

impl Engine<'_> {
    /// The free slot for a new prompt and how many of its tokens are already there:
    /// the free slot holding its longest reusable prefix, or a busy slot's prefix copied
    /// into a free one when that is longer, or the free slot whose residue is worth
    /// least, emptied.
    pub(super) fn place(&mut self, prompt: &Prompt, ends: &[usize]) -> (usize, usize) {
        let free: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .collect();
        if !self.reuse {
            let seq = free[0];
            self.forget(seq);
            return (seq, 0);
        }
        let tokens = &prompt.tokens;
        let from_free = free
            .iter()
            .filter_map(|&s| {
                let h = self.residue[s].as_ref()?;
                Some((reusable(tokens, ends, &h.tokens, &h.ends), h.used, s))
            })
            .filter(|(r, _, _)| *r > 0)
            .max();
        let from_busy = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(s, a)| {
                let a = a.as_ref()?;
                Some((
                    reusable(tokens, ends, &a.job.prompt.tokens[..a.fed], &a.ends),
                    s,
                ))
            })
            .filter(|(r, _)| *r > 0)
            .max();
        let best_free = from_free.map_or(0, |(r, _, _)| r);
        if let Some((r, src)) = from_busy.filter(|(r, _)| *r > best_free) {
            let seq = self.victim(&free);
            self.residue[seq] = None;
            let (Ok(src_id), Ok(dst_id)) = (i32::try_from(src), i32::try_from(seq)) else {
                self.forget(seq);
                return (seq, 0);
            };
            if self
                .ctx
                .copy_kv_cache_seq(src_id, dst_id, None, None)
                .is_ok()
            {
                self.cut(seq, r);
                return (seq, r);
            }
            self.forget(seq);
            return (seq, 0);
        }
        if let Some((r, _, seq)) = from_free {
            self.residue[seq] = None;
            self.cut(seq, r);
            return (seq, r);
        }
        let seq = self.victim(&free);
        self.forget(seq);
        (seq, 0)
    }

    /// The free slot to give up: an empty one, else the least recently used residue.
    fn victim(&self, free: &[usize]) -> usize {
        *free
            .iter()
            .min_by_key(|&&s| self.residue[s].as_ref().map(|h| h.used))
            .unwrap_or(&free[0])
    }

    /// Saves the system prompt `seq` holds once it has been seen twice: its KV is cut to
    /// the system prompt, written to the prefix store, and kept as the slot's residue.
    pub(super) fn maybe_save(&mut self, seq: usize, shared: usize) {
        let Some(store) = self.prefixes.as_ref() else {
            return;
        };
        let Some(held) = self.residue[seq].as_ref() else {
            return;
        };
        if shared == 0 || shared > held.tokens.len() {
            return;
        }
        // Saved prefixes are chunked on the plain n_batch grid (how they are reloaded).
        let inner: Vec<usize> = held.ends.iter().copied().filter(|&e| e <= shared).collect();
        if inner != chunk_ends(shared, &[], self.n_batch) {
            return;
        }
        let system = held.tokens[..shared].to_vec();
        let key = {
            let mut h = DefaultHasher::new();
            system.hash(&mut h);
            h.finish()
        };
        if self.seen.len() > 4096 {
            self.seen.clear();
        }
        let count = self.seen.entry(key).or_insert(0);
        *count += 1;
        if *count < 2 || store.has(&system) {
            return;
        }
        let store = store.clone();
        self.cut(seq, shared);
        self.residue[seq] = Some(Residue {
            tokens: system.clone(),
            ends: inner,
            used: Instant::now(),
        });
        let tokens: Vec<LlamaToken> = system.iter().map(|&t| LlamaToken(t)).collect();
        let ctx = &self.ctx;
        let saved = store.save(&system, |path| {
            ctx.state_seq_save_file(path, i32::try_from(seq).unwrap_or(0), &tokens)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        match saved {
            Ok(bytes) => {
                tracing::info!(
                    tokens = shared,
                    bytes,
                    "system prompt KV saved for reuse after restarts"
                );
                self.metrics
                    .prefix_saved_bytes
                    .set(i64::try_from(store.bytes()).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "system prompt KV not saved"),
        }
    }

    /// Loads the saved system prompts (most recently used first) into the slots.
    pub(super) fn load_saved_prefixes(&mut self) {
        let Some(store) = self.prefixes.clone() else {
            return;
        };
        let mut seq = 0;
        for saved in store.saved() {
            if seq >= self.slots.len() {
                break;
            }
            let Ok(id) = i32::try_from(seq) else { break };
            match self
                .ctx
                .state_seq_load_file(&saved.path, id, self.per_request)
            {
                Ok((tokens, _)) if !tokens.is_empty() && tokens.len() < self.per_request => {
                    let tokens: Vec<i32> = tokens.into_iter().map(|t| t.0).collect();
                    self.residue[seq] = Some(Residue {
                        ends: chunk_ends(tokens.len(), &[], self.n_batch),
                        tokens,
                        used: Instant::now(),
                    });
                    store.touch(&saved.path);
                    seq += 1;
                }
                _ => {
                    tracing::warn!(file = %saved.path.display(), "saved prompt prefix could not be loaded; removed");
                    self.forget(seq);
                    store.discard(&saved.path);
                }
            }
        }
        self.metrics
            .prefix_saved_bytes
            .set(i64::try_from(store.bytes()).unwrap_or(i64::MAX));
        if seq > 0 {
            tracing::info!(prefixes = seq, "saved system prompts loaded for reuse");
        }
    }
}
