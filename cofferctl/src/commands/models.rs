//! `cofferctl models ...`: the lifecycle calls and the reports.

use std::process::ExitCode;

use coffer_admin_api::AdminClient;
use coffer_admin_api::models::ActivateOptions;
use coffer_admin_api::reports::ShadowRequest;

use super::transfer;
use crate::args::ModelsCommand;
use crate::output::show;
use crate::print::{models as print, reports};

pub async fn run(client: &AdminClient, json: bool, command: ModelsCommand) -> ExitCode {
    match command {
        ModelsCommand::List => show(json, client.models().await, print::model_list),
        ModelsCommand::Show {
            name,
            version: None,
        } => show(json, client.model(&name).await, print::model),
        ModelsCommand::Show {
            name,
            version: Some(version),
        } => show(json, client.version(&name, &version).await, print::version),
        ModelsCommand::History { name, limit } => {
            show(json, client.history(name.as_deref(), limit).await, |h| {
                print::history(&h.history, true)
            })
        }
        ModelsCommand::Import {
            dir,
            allow_schema_change,
        } => transfer::import(client, json, &dir, allow_schema_change).await,
        ModelsCommand::Verify { name, version } => {
            transfer::verify(client, json, &name, &version).await
        }
        ModelsCommand::Activate {
            name,
            version,
            allow_schema_change,
            require_shadow,
        } => {
            let options = ActivateOptions {
                allow_schema_change,
                require_shadow,
            };
            show(
                json,
                client.activate(&name, &version, options).await,
                print::activation,
            )
        }
        ModelsCommand::Rollback { name } => {
            show(json, client.rollback(&name).await, print::activation)
        }
        ModelsCommand::Pin { name, version } => {
            show(json, client.pin(&name, &version).await, print::pinned)
        }
        ModelsCommand::Unpin { name } => show(json, client.unpin(&name).await, print::unpinned),
        ModelsCommand::Remove { name, version } => {
            show(json, client.remove(&name, &version).await, print::removed)
        }
        ModelsCommand::Gc => show(json, client.gc().await, print::gc),
        ModelsCommand::Drift { name } => show(json, client.drift(&name).await, reports::drift),
        ModelsCommand::Shadow {
            name,
            version,
            fraction,
        } => {
            let request = ShadowRequest { version, fraction };
            show(
                json,
                client.start_shadow(&name, &request).await,
                reports::shadow_started,
            )
        }
        ModelsCommand::ShadowReport { name } => show(
            json,
            client.shadow_report(&name).await,
            reports::shadow_report,
        ),
        ModelsCommand::ShadowStop { name } => show(json, client.stop_shadow(&name).await, |s| {
            format!("shadow stopped\n{}", reports::shadow_report(s))
        }),
    }
}
