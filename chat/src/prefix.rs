//! Prompt-prefix reuse, the rules that keep it exact.
//!
//! A prompt is decoded in chunks ([`chunk_ends`]): `n_batch` tokens at a time, counted
//! afresh from the start of each message (a chunk never crosses the end of a message's
//! content), each chunk alone in its decode step. The chunks are a function of the
//! prompt only, so the KV cells of a chunk are the same bits whichever request computed
//! them. A new prompt may therefore take over the cells of a held sequence up to a chunk
//! end where both prompts have the same tokens and the same chunks ([`reusable`]), and
//! compute only the rest: its greedy answer is the one a cold start gives. Generated
//! tokens (decoded one at a time) are never reused, nor a chunk the new prompt would
//! cut differently.

/// The ends of a prompt's chunks, ascending; the last is `len`.
pub fn chunk_ends(len: usize, breaks: &[usize], n_batch: usize) -> Vec<usize> {
    let n_batch = n_batch.max(1);
    let mut ends = Vec::new();
    let mut start = 0;
    let segments = breaks
        .iter()
        .copied()
        .filter(|&b| b > 0 && b < len)
        .chain(std::iter::once(len));
    for end in segments {
        if end <= start {
            continue;
        }
        let mut at = start;
        while at < end {
            at = (at + n_batch).min(end);
            ends.push(at);
        }
        start = end;
    }
    ends
}

/// How many leading tokens of `prompt` (chunked as `ends`) can be taken from a sequence
/// that holds the KV of `held` (chunked as `held_ends`): the largest chunk end both
/// plans share, up to which the tokens are equal, within what is held, and short of the
/// whole prompt (its last token must be decoded for the first logits).
pub fn reusable(prompt: &[i32], ends: &[usize], held: &[i32], held_ends: &[usize]) -> usize {
    let same = prompt.iter().zip(held).take_while(|(a, b)| a == b).count();
    let limit = same.min(held.len()).min(prompt.len().saturating_sub(1));
    let mut best = 0;
    for (a, b) in ends.iter().zip(held_ends) {
        if a != b || *a > limit {
            break;
        }
        best = *a;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_restart_at_each_message_and_never_cross_one() {
        assert_eq!(chunk_ends(10, &[], 4), vec![4, 8, 10]);
        assert_eq!(chunk_ends(10, &[6], 4), vec![4, 6, 10]);
        assert_eq!(chunk_ends(12, &[3, 5], 4), vec![3, 5, 9, 12]);
        // Breaks outside the prompt or repeated change nothing.
        assert_eq!(chunk_ends(8, &[0, 8, 9], 4), vec![4, 8]);
        assert_eq!(chunk_ends(0, &[], 4), Vec::<usize>::new());
    }

    #[test]
    fn reuse_stops_at_a_shared_chunk_end_within_the_equal_tokens() {
        let system: Vec<i32> = (0..10).collect();
        let mut a = system.clone();
        a.extend([100, 101, 102]);
        let mut b = system.clone();
        b.extend([200, 201]);
        let (ea, eb) = (chunk_ends(13, &[10], 4), chunk_ends(12, &[10], 4));
        assert_eq!(ea, vec![4, 8, 10, 13]);
        // The system message's chunks (4, 8, 10) are shared.
        assert_eq!(reusable(&b, &eb, &a, &ea), 10);
        // Only what is held: a sequence cancelled after its first chunk.
        assert_eq!(reusable(&b, &eb, &a[..4], &ea), 4);
        // The same prompt again keeps its last token to decode: back to a chunk end.
        assert_eq!(reusable(&a, &ea, &a, &ea), 10);
        // Without the break, the held chunks (4, 8, 12) differ from the new ones after 8.
        let no_break = chunk_ends(13, &[], 4);
        assert_eq!(reusable(&b, &eb, &a, &no_break), 8);
        // Different first tokens: nothing.
        let mut c = a.clone();
        c[0] = -1;
        assert_eq!(reusable(&c, &ea, &a, &ea), 0);
    }
}
