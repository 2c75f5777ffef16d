//! The human form of every answer, as text: one function per answer type, tested
//! against typed values. `--json` prints the answer itself instead.

pub mod decisions;
pub mod keys;
pub mod models;
pub mod reports;

/// `writeln!` into a `String`, which cannot fail.
macro_rules! line {
    ($out:expr) => {{
        $out.push('\n');
    }};
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use line;
