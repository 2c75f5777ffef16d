//! `cofferctl keys create|list|revoke`.

use std::process::ExitCode;

use coffer_admin_api::AdminClient;
use coffer_admin_api::keys::CreateKey;

use crate::args::KeysCommand;
use crate::output::show;
use crate::print::keys as print;

pub async fn run(client: &AdminClient, json: bool, command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            rate,
            burst,
        } => {
            let request = CreateKey {
                name,
                scopes: scopes
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                rate,
                burst,
            };
            show(json, client.create_key(&request).await, print::created)
        }
        KeysCommand::List => show(json, client.keys().await, |k| print::key_table(k)),
        KeysCommand::Revoke { name } => show(json, client.revoke_key(&name).await, print::revoked),
    }
}
