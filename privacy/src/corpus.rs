//! A labelled corpus for measuring the recognizers: a seeded generator of Chinese and
//! English sentences that carry checksum-valid identifiers in many spellings (plain,
//! grouped by spaces, dashes or dots, full-width digits and separators) and look-alikes
//! that must not be flagged (dates, times, order numbers, amounts, codes). Used by the
//! crate's precision/recall test and by the throughput benchmark.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::recognize::{CardNumber, ChineseResidentId, Iban, Kind};

/// One sentence and the identifiers in it (byte ranges).
#[derive(Debug, Clone)]
pub struct Sample {
    pub text: String,
    pub labels: Vec<(Kind, usize, usize)>,
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10)))
        .collect()
}

fn luhn_complete(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|s| CardNumber::luhn(s.as_bytes()))
        .unwrap_or_default()
}

/// A Luhn-valid card number (Visa, Mastercard, Amex, Discover, UnionPay).
pub fn card(rng: &mut StdRng) -> String {
    let (prefix, len) = *[
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("62", 16),
        ("62", 19),
        ("4", 13),
    ]
    .choose(rng)
    .unwrap_or(&("4", 16));
    let body = format!("{prefix}{}", digits(rng, len - prefix.len() - 1));
    luhn_complete(&body)
}

/// A UnionPay number whose last digit fails Luhn (UnionPay does not require it).
pub fn unionpay_no_luhn(rng: &mut StdRng) -> String {
    let len = rng.gen_range(16..=19);
    loop {
        let n = format!("62{}", digits(rng, len - 2));
        if !CardNumber::luhn(n.as_bytes()) {
            return n;
        }
    }
}

/// A valid IBAN of a common country.
pub fn iban(rng: &mut StdRng) -> String {
    let country = *["DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE", "PL"]
        .choose(rng)
        .unwrap_or(&"DE");
    let len = Iban::length(country.as_bytes()).unwrap_or(22);
    let bban = match country {
        "GB" => format!(
            "{}{}",
            ["NWBK", "BARC", "HBUK"].choose(rng).unwrap_or(&"NWBK"),
            digits(rng, 14)
        ),
        "NL" => format!(
            "{}{}",
            ["ABNA", "RABO", "INGB"].choose(rng).unwrap_or(&"ABNA"),
            digits(rng, 10)
        ),
        "IT" => format!("X{}", digits(rng, len - 5)),
        _ => digits(rng, len - 4),
    };
    let mut probe = format!("{country}00{bban}").into_bytes();
    let check = (0..100)
        .find(|c| {
            probe[2] = b'0' + (c / 10) as u8;
            probe[3] = b'0' + (c % 10) as u8;
            Iban::check(&probe)
        })
        .unwrap_or(0);
    format!("{country}{check:02}{bban}")
}

const PROVINCES: [&str; 12] = [
    "11", "31", "44", "32", "33", "51", "42", "37", "41", "61", "35", "65",
];

/// An 18-character resident ID with a valid date and check character.
pub fn cn_id(rng: &mut StdRng) -> String {
    let year = rng.gen_range(1950..2006);
    let month = rng.gen_range(1..=12);
    let day = rng.gen_range(1..=28);
    let first = format!(
        "{}{}{year}{month:02}{day:02}{}",
        PROVINCES.choose(rng).unwrap_or(&"11"),
        digits(rng, 4),
        digits(rng, 3)
    );
    let check = ChineseResidentId::check_char(first.as_bytes()) as char;
    format!("{first}{check}")
}

/// A legacy 15-digit resident ID.
pub fn cn_id15(rng: &mut StdRng) -> String {
    format!(
        "{}{}{:02}{:02}{:02}{}",
        PROVINCES.choose(rng).unwrap_or(&"11"),
        digits(rng, 4),
        rng.gen_range(30..99),
        rng.gen_range(1..=12),
        rng.gen_range(1..=28),
        digits(rng, 3)
    )
}

/// A Chinese mobile number, sometimes with its country prefix.
pub fn cn_mobile(rng: &mut StdRng) -> String {
    let number = format!("1{}{}", rng.gen_range(3..10), digits(rng, 9));
    match rng.gen_range(0..4) {
        0 => format!("+86 {number}"),
        1 => format!("0086{number}"),
        _ => number,
    }
}

/// An international number written with `+`.
pub fn intl_phone(rng: &mut StdRng) -> String {
    match rng.gen_range(0..3) {
        0 => format!("+44 20 {} {}", digits(rng, 4), digits(rng, 4)),
        1 => format!("+1 415 {} {}", digits(rng, 3), digits(rng, 4)),
        _ => format!("+49 30 {}", digits(rng, 7)),
    }
}

pub fn email(rng: &mut StdRng) -> String {
    let user = *[
        "zhang.san",
        "li_si",
        "wang.wu+bank",
        "j.smith",
        "chen88",
        "m-garcia",
    ]
    .choose(rng)
    .unwrap_or(&"x");
    let domain = *[
        "bank-a.com.cn",
        "example.com",
        "qq.com",
        "163.com",
        "mail.co.uk",
    ]
    .choose(rng)
    .unwrap_or(&"example.com");
    format!("{user}{}@{domain}", rng.gen_range(0..100))
}

pub fn ipv4(rng: &mut StdRng) -> String {
    format!(
        "{}.{}.{}.{}",
        rng.gen_range(1..224),
        rng.gen_range(0..256),
        rng.gen_range(0..256),
        rng.gen_range(1..255)
    )
}

pub fn ipv6(rng: &mut StdRng) -> String {
    let groups: Vec<String> = (0..8)
        .map(|_| format!("{:x}", rng.gen_range(0..0x10000u32)))
        .collect();
    if rng.gen_bool(0.5) {
        format!("2001:db8::{}:{}", groups[6], groups[7])
    } else {
        groups.join(":")
    }
}

/// A long digit run that no more specific recognizer claims.
pub fn account(rng: &mut StdRng) -> String {
    loop {
        let (lead, len) = (rng.gen_range(1..6), rng.gen_range(11..18));
        let n = format!("{lead}{}", digits(rng, len));
        let d = n.as_bytes();
        if CardNumber::check(d).is_none()
            && !ChineseResidentId::check15(d)
            && !d.starts_with(b"86")
            && !d.starts_with(b"00")
        {
            return n;
        }
    }
}

fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            ' ' => '\u{3000}',
            _ => c,
        })
        .collect()
}

/// Writes a number the way people do: plain, grouped by 4 with one separator, or in
/// full-width forms.
fn spell(rng: &mut StdRng, number: &str) -> String {
    let grouped = |sep: &str| {
        let chars: Vec<char> = number.chars().collect();
        chars
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(sep)
    };
    match rng.gen_range(0..7) {
        0 | 1 => number.to_string(),
        2 => grouped(" "),
        3 => grouped("-"),
        4 => grouped("."),
        5 => full_width(number),
        _ => full_width(&grouped(" ")),
    }
}

const ZH: [&str; 10] = [
    "客户{}的交易已完成",
    "请核对{}后办理",
    "联系方式：{}，谢谢",
    "账户信息{}已冻结",
    "备注{}请勿外传",
    "{}是客户留下的",
    "经核实{}无误",
    "客户提供了{}。",
    "收到{}的申请",
    "系统记录{}",
];

const EN: [&str; 8] = [
    "Customer gave {} at the counter.",
    "Please verify {} before approval",
    "Contact: {}",
    "Record {} flagged for review.",
    "{} was declined",
    "note: {}; follow up",
    "the applicant's details ({}) are on file",
    "called about {} today",
];

/// Look-alikes that must not be flagged.
fn look_alike(rng: &mut StdRng) -> String {
    let y = rng.gen_range(1990..2030);
    let m = rng.gen_range(1..=12);
    let d = rng.gen_range(1..=28);
    match rng.gen_range(0..14) {
        0 => format!("{y}-{m:02}-{d:02}"),
        1 => format!("{y}年{m}月{d}日"),
        2 => format!("{d:02}/{m:02}/{y}"),
        3 => format!("{y}{m:02}{d:02}"),
        4 => format!("{y}.{m:02}.{d:02}"),
        5 => format!("ORD-{y}-{}", digits(rng, 6)),
        6 => format!("DD{y}{m:02}{d:02}{}", digits(rng, 4)),
        7 => format!("订单号{}", digits(rng, 18)),
        8 => format!("order no. {}", digits(rng, 16)),
        9 => format!(
            "¥{},{}.{}",
            rng.gen_range(1..999),
            digits(rng, 3),
            digits(rng, 2)
        ),
        10 => format!(
            "{},{},{}.{} 元",
            rng.gen_range(1..99),
            digits(rng, 3),
            digits(rng, 3),
            digits(rng, 2)
        ),
        11 => format!(
            "{:02}:{:02}:{:02}",
            rng.gen_range(0..24),
            rng.gen_range(0..60),
            rng.gen_range(0..60)
        ),
        12 => format!("验证码 {}", digits(rng, 6)),
        _ => format!("USD {}.{}", rng.gen_range(1..100_000), digits(rng, 2)),
    }
}

/// The corpus: `n` sentences from `seed`. About two in three carry an identifier; the
/// rest, and part of those, carry look-alikes.
pub fn generate(seed: u64, n: usize) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let chinese = rng.gen_bool(0.5);
            let template = if chinese {
                *ZH.choose(&mut rng).unwrap_or(&"{}")
            } else {
                *EN.choose(&mut rng).unwrap_or(&"{}")
            };
            let (head, tail) = template.split_once("{}").unwrap_or((template, ""));
            let mut text = String::new();
            let mut labels = Vec::new();
            if rng.gen_bool(0.5) {
                text.push_str(&look_alike(&mut rng));
                text.push_str(if chinese { "，" } else { ", " });
            }
            text.push_str(head);
            if rng.gen_bool(0.7) {
                let (kind, spelled) = match rng.gen_range(0..11) {
                    0 | 1 => (Kind::Pan, {
                        let n = card(&mut rng);
                        spell(&mut rng, &n)
                    }),
                    2 => (Kind::Pan, {
                        let n = unionpay_no_luhn(&mut rng);
                        spell(&mut rng, &n)
                    }),
                    3 => {
                        let iban = iban(&mut rng);
                        let s = if rng.gen_bool(0.5) {
                            spell(&mut rng, &iban)
                        } else {
                            iban.clone()
                        };
                        (Kind::Iban, s)
                    }
                    4 => (Kind::CnId, {
                        let n = cn_id(&mut rng);
                        spell(&mut rng, &n)
                    }),
                    5 => (Kind::CnId, cn_id15(&mut rng)),
                    6 => {
                        let p = cn_mobile(&mut rng);
                        let s = if rng.gen_bool(0.3) { full_width(&p) } else { p };
                        (Kind::Phone, s)
                    }
                    7 => (Kind::Phone, intl_phone(&mut rng)),
                    8 => {
                        let e = email(&mut rng);
                        let s = if rng.gen_bool(0.3) {
                            e.replace('@', "＠")
                        } else {
                            e
                        };
                        (Kind::Email, s)
                    }
                    9 => {
                        let ip = if rng.gen_bool(0.5) {
                            ipv4(&mut rng)
                        } else {
                            ipv6(&mut rng)
                        };
                        (Kind::Ip, ip)
                    }
                    _ => (Kind::Account, {
                        let n = account(&mut rng);
                        spell(&mut rng, &n)
                    }),
                };
                let start = text.len();
                text.push_str(&spelled);
                labels.push((kind, start, text.len()));
            } else {
                text.push_str(&look_alike(&mut rng));
            }
            text.push_str(tail);
            Sample { text, labels }
        })
        .collect()
}
