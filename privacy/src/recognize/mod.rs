//! The recognizers and the scan that runs them over a text. Each identifier type is its
//! own type with its own checks (`card`, `iban`, `cn_id`, `phone`, `email`, `ip`,
//! `account`); `digits` finds the numbers they are offered. Overlapping candidates are
//! settled by strength (checksum-valid beats shape-only beats length-only), then by
//! length, so a number is reported once, as its most specific kind, and whole.

mod account;
mod card;
mod cn_id;
mod digits;
mod email;
mod iban;
mod ip;
mod phone;

pub use account::AccountNumber;
pub use card::{CardMatch, CardNumber};
pub use cn_id::ChineseResidentId;
pub use email::EmailAddress;
pub use iban::Iban;
pub use ip::IpAddress;
pub use phone::PhoneNumber;

use serde::Serialize;

use crate::normalize::Normalized;

/// What kind of identifier a finding is; its tag replaces it in redacted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Pan,
    Iban,
    CnId,
    Phone,
    Email,
    Ip,
    Account,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Pan,
        Kind::Iban,
        Kind::CnId,
        Kind::Phone,
        Kind::Email,
        Kind::Ip,
        Kind::Account,
    ];

    /// The tag written in place of the identifier.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Pan => "[PAN]",
            Kind::Iban => "[IBAN]",
            Kind::CnId => "[CN_ID]",
            Kind::Phone => "[PHONE]",
            Kind::Email => "[EMAIL]",
            Kind::Ip => "[IP]",
            Kind::Account => "[ACCOUNT]",
        }
    }
}

/// One identifier found in a text: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// A match in char positions of the normalised text, before overlaps are settled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    kind: Kind,
    start: usize,
    end: usize,
    /// 4: e-mail (contains the others), 3: checksum or exact form, 2: shape, 1: length.
    strength: u8,
}

impl Candidate {
    pub(crate) fn new(kind: Kind, start: usize, end: usize, strength: u8) -> Self {
        Candidate {
            kind,
            start,
            end,
            strength,
        }
    }
}

/// Whether a text could hold anything the recognizers find: every identifier has an
/// ASCII digit, `@` or `:`, or is written in full-width forms (UTF-8 lead byte 0xEF).
fn may_contain(text: &str) -> bool {
    text.bytes()
        .any(|b| b.is_ascii_digit() || b == b'@' || b == b':' || b == 0xEF)
}

fn scan_iban(chars: &[char], out: &mut Vec<Candidate>) {
    let up = |c: char| c.to_ascii_uppercase();
    for i in 0..chars.len().saturating_sub(4) {
        let starts = chars[i].is_ascii_alphabetic()
            && chars[i + 1].is_ascii_alphabetic()
            && chars[i + 2].is_ascii_digit()
            && chars[i + 3].is_ascii_digit();
        if !starts || (i > 0 && chars[i - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let country = [up(chars[i]) as u8, up(chars[i + 1]) as u8];
        let Some(length) = Iban::length(&country) else {
            continue;
        };
        let mut iban = Vec::with_capacity(length);
        let mut j = i;
        while iban.len() < length && j < chars.len() {
            let c = chars[j];
            if c.is_ascii_alphanumeric() {
                iban.push(up(c) as u8);
                j += 1;
            } else if matches!(c, ' ' | '-' | '.')
                && chars.get(j + 1).is_some_and(char::is_ascii_alphanumeric)
                && !iban.is_empty()
            {
                j += 1;
            } else {
                break;
            }
        }
        let ends_clean = !chars.get(j).is_some_and(char::is_ascii_alphanumeric);
        if iban.len() == length && ends_clean && Iban::check(&iban) {
            out.push(Candidate::new(Kind::Iban, i, j, 3));
        }
    }
}

fn scan_email(chars: &[char], out: &mut Vec<Candidate>) {
    for (at, _) in chars.iter().enumerate().filter(|(_, c)| **c == '@') {
        if let Some((start, end)) = EmailAddress::around(chars, at) {
            out.push(Candidate::new(Kind::Email, start, end, 4));
        }
    }
}

fn scan_ipv6(chars: &[char], out: &mut Vec<Candidate>) {
    let v6 = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
    let mut i = 0;
    while i < chars.len() {
        let fresh = v6(chars[i]) && (i == 0 || !chars[i - 1].is_ascii_alphanumeric());
        if !fresh {
            i += 1;
            continue;
        }
        // A colon right before the address (`联系方式：2001:db8::1`) is punctuation.
        if chars[i] == ':' && chars.get(i + 1).is_some_and(|c| *c != ':') {
            i += 1;
        }
        let mut j = i;
        while j < chars.len() && v6(chars[j]) {
            j += 1;
        }
        // The longest textual IPv6 address (with an embedded IPv4 part) has 45 chars.
        if let Some(n) = IpAddress::ipv6_prefix(&chars[i..j.min(i + 45)]) {
            let end = i + n;
            if !chars.get(end).is_some_and(char::is_ascii_alphanumeric) {
                out.push(Candidate::new(Kind::Ip, i, end, 3));
            }
        }
        i = j.max(i + 1);
    }
}

/// Every identifier in `text`, in text order, none overlapping.
pub fn find(text: &str) -> Vec<Finding> {
    if !may_contain(text) {
        return Vec::new();
    }
    let norm = Normalized::new(text);
    let mut candidates = Vec::new();
    digits::scan(&norm.chars, &mut candidates);
    scan_iban(&norm.chars, &mut candidates);
    scan_email(&norm.chars, &mut candidates);
    if norm.chars.contains(&':') {
        scan_ipv6(&norm.chars, &mut candidates);
    }
    candidates.sort_by(|a, b| {
        (b.strength, b.end - b.start, a.start).cmp(&(a.strength, a.end - a.start, b.start))
    });
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| c.end <= k.start || c.start >= k.end) {
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| c.start);
    kept.iter()
        .map(|c| {
            let (start, end) = norm.byte_range(c.start, c.end);
            Finding {
                kind: c.kind,
                start,
                end,
            }
        })
        .collect()
}
