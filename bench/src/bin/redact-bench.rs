//! Throughput of the PII redaction in MB/s on three inputs: the labelled corpus (about
//! two thirds of its lines carry an identifier), the same lines with the identifiers
//! taken out (look-alikes only), and plain prose without digits (the fast path). Median
//! of the rounds, one thread.

use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Megabytes of text per input.
    #[arg(long, default_value_t = 8)]
    mb: usize,
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

fn build(mb: usize, mut line: impl FnMut(usize) -> String) -> Vec<String> {
    let mut lines = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < mb << 20 {
        let l = line(i);
        size += l.len() + 1;
        lines.push(l);
        i += 1;
    }
    lines
}

fn measure(lines: &[String], rounds: usize) -> (f64, usize) {
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut rates = Vec::new();
    let mut found = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        found = 0;
        for l in lines {
            let out = coffer_privacy::redact(l);
            found += usize::from(matches!(out, std::borrow::Cow::Owned(_)));
        }
        rates.push(bytes as f64 / started.elapsed().as_secs_f64() / 1e6);
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], found)
}

fn main() {
    let args = Args::parse();
    let samples = coffer_privacy::corpus::generate(1, 200_000);
    let corpus = build(args.mb, |i| samples[i % samples.len()].text.clone());
    let look_alikes = build(args.mb, |i| {
        let s = &samples[i % samples.len()];
        let mut text = s.text.clone();
        for &(_, a, b) in s.labels.iter().rev() {
            text.replace_range(a..b, "");
        }
        text
    });
    let prose = build(args.mb, |i| {
        if i % 2 == 0 {
            "The branch opened at nine and the queue was short; staff checked the forms.".into()
        } else {
            "客户在柜台办理了业务，工作人员核对了材料并完成了登记，一切正常。".into()
        }
    });
    println!(
        "{:<34} {:>8} {:>12} {:>10}",
        "input", "MB", "lines changed", "MB/s"
    );
    for (name, lines) in [
        ("corpus (identifiers + look-alikes)", &corpus),
        ("look-alikes only", &look_alikes),
        ("prose without digits", &prose),
    ] {
        let mb = lines.iter().map(|l| l.len() + 1).sum::<usize>() as f64 / 1e6;
        let (rate, changed) = measure(lines, args.rounds);
        println!("{name:<34} {mb:>8.1} {changed:>12} {rate:>10.1}");
    }
}
