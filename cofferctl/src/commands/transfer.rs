//! The two commands that move many bytes and draw a progress bar: `models import DIR`
//! (the version streamed to cofferd, which then runs its gate) and `models verify`
//! (cofferd re-hashes every file and reports as it goes).

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use coffer_admin_api::AdminClient;
use coffer_admin_api::models::VersionState;

use crate::format::one_line;
use crate::output::{fail, show};
use crate::print::models as print;
use crate::progress::ProgressBar;

/// Exits 2 when the version was stored but failed its evaluation gate.
pub async fn import(
    client: &AdminClient,
    json: bool,
    dir: &Path,
    allow_schema_change: bool,
) -> ExitCode {
    // The label only: the client reads and checks the manifest itself and reports what
    // is wrong with it.
    let what = std::fs::read_to_string(dir.join("manifest.toml"))
        .ok()
        .and_then(|t| coffer_models::Manifest::parse(&t).ok())
        .map_or_else(|| dir.display().to_string(), |m| m.id());
    let label = format!("importing {what}");
    let bar = Arc::new(Mutex::new(ProgressBar::new()));
    let drawer = Arc::clone(&bar);
    let progress = Box::new(move |sent: u64, total: u64| {
        if let Ok(mut bar) = drawer.lock() {
            let tail = if sent >= total {
                " (checking and evaluating)"
            } else {
                ""
            };
            bar.update(&label, sent, total, tail);
        }
    });
    let result = client
        .import(dir, allow_schema_change, Some(progress))
        .await;
    if let Ok(mut bar) = bar.lock() {
        bar.finish();
    }
    let failed = result
        .as_ref()
        .ok()
        .filter(|r| r.state == VersionState::Failed)
        .cloned();
    let code = show(json, result, print::imported);
    match failed {
        Some(record) => {
            eprintln!(
                "cofferctl: {} FAILED its evaluation gate: {}",
                record.id(),
                one_line(record.reason.as_deref().unwrap_or("no reason given"), 500)
            );
            ExitCode::from(2)
        }
        None => code,
    }
}

/// One bar per file from the progress lines, then the result.
pub async fn verify(client: &AdminClient, json: bool, name: &str, version: &str) -> ExitCode {
    let id = format!("{name}@{version}");
    let label = format!("verifying {id}");
    let mut bar = ProgressBar::new();
    let mut file = String::new();
    let result = client
        .verify_with_progress(name, version, |p| {
            if p.file != file {
                bar.next_line();
                file.clone_from(&p.file);
            }
            let text = format!("{label} {}", one_line(&file, 60));
            bar.update(&text, p.done, p.total, "");
        })
        .await;
    bar.finish();
    match result {
        Ok(verified) => show(json, Ok(verified), |_| {
            format!("{id}: every file matches its manifest\n")
        }),
        Err(e) => fail(json, &e),
    }
}
