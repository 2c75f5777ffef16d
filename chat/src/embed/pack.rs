//! Packing queued inputs into encoder passes: inputs go in queue order, each pass holds
//! at most `batch_tokens` tokens and `max_sequences` inputs, and an input is never split
//! (llama.cpp's encoder takes a whole batch in one micro-batch). Every input fits a pass
//! on its own: the handle refuses longer ones before they are queued.

/// Where one input of one job is: `(job, input)`.
pub type Slot = (usize, usize);

/// The passes for `lengths[job][input]` tokens, each a list of slots in queue order.
pub fn passes(lengths: &[Vec<usize>], batch_tokens: usize, max_sequences: usize) -> Vec<Vec<Slot>> {
    let mut out: Vec<Vec<Slot>> = Vec::new();
    let mut current: Vec<Slot> = Vec::new();
    let mut tokens = 0;
    for (job, inputs) in lengths.iter().enumerate() {
        for (input, &n) in inputs.iter().enumerate() {
            if !current.is_empty() && (tokens + n > batch_tokens || current.len() == max_sequences)
            {
                out.push(std::mem::take(&mut current));
                tokens = 0;
            }
            current.push((job, input));
            tokens += n;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_fill_passes_in_order_within_both_bounds() {
        let lengths = vec![vec![5, 5], vec![8], vec![2, 2, 2]];
        let p = passes(&lengths, 10, 2);
        assert_eq!(
            p,
            vec![
                vec![(0, 0), (0, 1)],
                vec![(1, 0), (2, 0)],
                vec![(2, 1), (2, 2)]
            ]
        );
        for pass in &p {
            let n: usize = pass.iter().map(|&(j, i)| lengths[j][i]).sum();
            assert!(n <= 10 && pass.len() <= 2);
        }
    }

    #[test]
    fn an_input_as_long_as_a_pass_goes_alone_and_nothing_is_lost() {
        let lengths = vec![vec![3], vec![10], vec![1]];
        let p = passes(&lengths, 10, 64);
        assert_eq!(p, vec![vec![(0, 0)], vec![(1, 0)], vec![(2, 0)]]);
        assert!(passes(&[], 10, 4).is_empty());
    }
}
