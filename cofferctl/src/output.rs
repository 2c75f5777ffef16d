//! One way to end a command: the answer as JSON (`--json`) or as text for people, and
//! a refusal as its message on stderr (and its `{"error": ...}` body with `--json`).

use std::process::ExitCode;

use coffer_admin_api::ClientError;
use serde::Serialize;

/// Prints `result` and returns the exit code: 0 for an answer, 1 for any failure.
pub fn show<T: Serialize>(
    json: bool,
    result: Result<T, ClientError>,
    human: impl FnOnce(&T) -> String,
) -> ExitCode {
    match result {
        Ok(answer) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                );
            } else {
                print!("{}", human(&answer));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(json, &e),
    }
}

/// Reports a failed call.
pub fn fail(json: bool, e: &ClientError) -> ExitCode {
    if json {
        if let Some(body) = e.body() {
            println!("{}", serde_json::to_string(&body).unwrap_or_default());
        }
    }
    eprintln!("cofferctl: {e}");
    ExitCode::FAILURE
}
