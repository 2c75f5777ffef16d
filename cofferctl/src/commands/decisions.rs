//! `cofferctl decisions show|list|replay|export|rotate-key`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use coffer_admin_api::AdminClient;
use coffer_admin_api::decisions::ReplayRequest;

use crate::args::DecisionsCommand;
use crate::output::show;
use crate::print::decisions as print;

/// `--since 7days` as epoch milliseconds (0: from the first decision kept).
fn since_ms(since: Option<&str>) -> Result<u64, String> {
    let Some(s) = since else { return Ok(0) };
    let ago = humantime::parse_duration(s)
        .map_err(|e| format!("--since {s:?}: {e} (use a duration such as 7days or 24h)"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(now.saturating_sub(ago).as_millis() as u64)
}

pub async fn run(client: &AdminClient, json: bool, command: DecisionsCommand) -> ExitCode {
    let since = |s: &Option<String>| {
        since_ms(s.as_deref()).map_err(|e| {
            eprintln!("cofferctl: {e}");
            ExitCode::FAILURE
        })
    };
    match command {
        DecisionsCommand::Show { request_id } => {
            show(json, client.decision(&request_id).await, print::records)
        }
        DecisionsCommand::List {
            model,
            since: s,
            limit,
        } => match since(&s) {
            Ok(t) => show(
                json,
                client.decisions(model.as_deref(), t, limit).await,
                print::list,
            ),
            Err(code) => code,
        },
        DecisionsCommand::Replay {
            model,
            since: s,
            limit,
        } => match since(&s) {
            Ok(since_ms) => {
                let request = ReplayRequest {
                    model,
                    since_ms,
                    limit,
                };
                let answer = client.replay_decisions(&request).await;
                let clean = answer
                    .as_ref()
                    .is_ok_and(|r| r.differing.is_empty() && r.unavailable.is_empty());
                let code = show(json, answer, print::replay);
                if clean { code } else { ExitCode::FAILURE }
            }
            Err(code) => code,
        },
        DecisionsCommand::Export {
            model,
            since: s,
            limit,
            redacted,
        } => match since(&s) {
            Ok(t) => {
                let answer = client
                    .export_decisions(model.as_deref(), t, limit, redacted)
                    .await;
                // An export is a file: JSON either way.
                show(true, answer, |_| String::new())
            }
            Err(code) => code,
        },
        DecisionsCommand::RotateKey => {
            show(json, client.rotate_decision_key().await, print::rotated)
        }
    }
}
