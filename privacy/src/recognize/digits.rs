//! Digit runs: the numbers in a text, with the single spaces, dashes or dots people put
//! inside them, a leading `+`, and a trailing `X` (the check character of a resident
//! ID). Every stretch of consecutive groups joined by one consistent separator (or none)
//! is offered to the digit recognizers; the caller keeps the best non-overlapping ones.

use super::account::AccountNumber;
use super::card::CardNumber;
use super::cn_id::ChineseResidentId;
use super::ip::IpAddress;
use super::phone::PhoneNumber;
use super::{Candidate, Kind};

#[derive(Debug)]
struct Group {
    start: usize,
    end: usize,
    digits: Vec<u8>,
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.')
}

fn is_digit(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}

/// Labels that name the number after them as an order or shipment reference.
const ORDER_LABELS: [&str; 6] = ["订单", "单号", "运单", "order", "tracking", "invoice"];

/// Whether one of [`ORDER_LABELS`] ends within the 6 chars before `start`.
fn order_label_before(chars: &[char], start: usize) -> bool {
    let from = start.saturating_sub(16);
    let before: String = chars[from..start].iter().collect::<String>().to_lowercase();
    let tail: String = before
        .chars()
        .rev()
        .take(6 + 8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    ORDER_LABELS.iter().any(|label| {
        tail.rfind(label)
            .is_some_and(|at| tail[at + label.len()..].chars().count() <= 6)
    })
}

/// Finds every digit run in `chars` and pushes what the recognizers accept.
pub fn scan(chars: &[char], out: &mut Vec<Candidate>) {
    let at = |i: usize| chars.get(i).copied();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() || (i > 0 && chars[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let plus = i > 0 && chars[i - 1] == '+';
        let run_start = if plus { i - 1 } else { i };
        let mut groups = Vec::new();
        let mut seps = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while is_digit(at(j)) {
                j += 1;
            }
            let mut digits: Vec<u8> = chars[start..j].iter().map(|&c| c as u8).collect();
            // A trailing X is a resident ID's check character when nothing alphanumeric
            // follows it.
            if matches!(at(j), Some('X' | 'x'))
                && !at(j + 1).is_some_and(|c| c.is_ascii_alphanumeric())
            {
                digits.push(b'X');
                j += 1;
                groups.push(Group {
                    start,
                    end: j,
                    digits,
                });
                break;
            }
            groups.push(Group {
                start,
                end: j,
                digits,
            });
            match at(j) {
                Some(s) if is_separator(s) && is_digit(at(j + 1)) => {
                    seps.push(s);
                    j += 1;
                }
                _ => break,
            }
        }
        let before = run_start.checked_sub(1).and_then(at);
        let after = at(j);
        let glued = before.is_some_and(|c| c.is_ascii_alphabetic())
            || after.is_some_and(|c| c.is_ascii_alphabetic());
        let order_context = order_label_before(chars, run_start);
        offer(
            &Run {
                groups: &groups,
                seps: &seps,
                plus,
                glued,
                order_context,
            },
            out,
        );
        i = j.max(i + 1);
    }
}

struct Run<'a> {
    groups: &'a [Group],
    /// `seps[k]` stands between group `k` and group `k + 1`.
    seps: &'a [char],
    plus: bool,
    glued: bool,
    /// An order or tracking number label stands just before the run.
    order_context: bool,
}

/// Offers every stretch `a..=b` of groups joined by one separator to the recognizers.
fn offer(run: &Run, out: &mut Vec<Candidate>) {
    let groups = run.groups;
    for a in 0..groups.len() {
        let mut digits: Vec<u8> = Vec::with_capacity(40);
        for b in a..groups.len() {
            // One separator throughout; after a `+` country code the first may differ
            // (`+86 138-1234-5678`).
            let plus_head = run.plus && a == 0;
            let reference = if plus_head && b >= 2 {
                run.seps[1]
            } else {
                run.seps.get(a).copied().unwrap_or(' ')
            };
            if b > a && !(plus_head && b == 1) && run.seps[b - 1] != reference {
                break;
            }
            digits.extend_from_slice(&groups[b].digits);
            if digits.len() > 34 {
                break;
            }
            // A stretch that its own separator continues on either side is part of a
            // longer grouped number: only the whole is judged, so that no recognizer
            // takes a piece of it and leaves the rest behind.
            if b > a {
                let sep = reference;
                let continues = (a > 0 && run.seps[a - 1] == sep) || run.seps.get(b) == Some(&sep);
                if continues {
                    continue;
                }
            }
            let lead_plus = run.plus && a == 0;
            let start = groups[a].start - usize::from(lead_plus);
            let end = groups[b].end;
            let candidate = |kind, strength| Candidate::new(kind, start, end, strength);
            // A whole dotted chain of four parts is an IPv4 address.
            let dotted = b > a && run.seps[a] == '.';
            if dotted {
                let chain_start = a == 0 || run.seps[a - 1] != '.';
                let chain_end = run.seps.get(b) != Some(&'.');
                let parts: Vec<&[u8]> = groups[a..=b].iter().map(|g| g.digits.as_slice()).collect();
                if chain_start && chain_end && IpAddress::ipv4(&parts) {
                    out.push(candidate(Kind::Ip, 3));
                    continue;
                }
            }
            if digits.last() == Some(&b'X') {
                if ChineseResidentId::check18(&digits) {
                    out.push(candidate(Kind::CnId, 3));
                }
                continue;
            }
            // A number behind `+`, or a mobile behind its country code, is a phone number
            // whatever its check digit says.
            if lead_plus {
                if PhoneNumber::check(&digits, true) {
                    out.push(candidate(Kind::Phone, 3));
                }
                continue;
            }
            let luhn = CardNumber::luhn(&digits);
            let amex_shape = digits.starts_with(b"34") || digits.starts_with(b"37");
            if ChineseResidentId::check18(&digits) {
                out.push(candidate(Kind::CnId, 3));
            } else if run.glued {
                // Glued to Latin letters: a reference code (`DD2024…`, `INV-…`), unless it
                // is a mobile number or a checksum-valid resident ID (above).
                if PhoneNumber::cn_mobile(&digits) {
                    out.push(candidate(Kind::Phone, 2));
                }
            } else if PhoneNumber::cn_with_prefix(&digits) {
                out.push(candidate(Kind::Phone, 3));
            } else if PhoneNumber::cn_mobile(&digits) {
                out.push(candidate(Kind::Phone, 2));
            } else if ChineseResidentId::check15(&digits) && !(amex_shape && luhn) {
                // A 15-digit number with a valid region and 19YY date is a legacy ID,
                // unless it is an Amex number (34/37 and Luhn-valid).
                out.push(candidate(Kind::CnId, 3));
            } else if run.order_context {
                // Named an order or shipment number: not a customer identifier.
            } else if CardNumber::check(&digits).is_some() {
                // UnionPay numbers rank with Luhn-valid ones, so that a long UnionPay
                // number is not cut at a Luhn-valid prefix.
                out.push(candidate(Kind::Pan, 3));
            } else if PhoneNumber::check(&digits, false) {
                out.push(candidate(Kind::Phone, 2));
            } else if AccountNumber::check(&digits, false) {
                out.push(candidate(Kind::Account, 1));
            }
        }
    }
}
