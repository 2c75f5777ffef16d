//! Putting a candidate scoring version in shadow beside the active one, stopping it,
//! and the shadow pass an activation may require (`docs/drift.md`).

use std::sync::Arc;

use coffer_models::Kind;

use super::{ManageError, ModelManager, schema};
use crate::lifecycle::registry::{RegistryError, State};
use crate::lifecycle::shadow::{Shadow, ShadowReport};

impl ModelManager {
    /// Loads `version` as a shadow of the active version of `name`: it then scores
    /// `fraction` of the live requests off the request path.
    pub async fn start_shadow(
        self: &Arc<Self>,
        name: &str,
        version: &str,
        fraction: f64,
        actor: &str,
    ) -> Result<ShadowReport, ManageError> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(ManageError::BadRequest(format!(
                "the fraction must be above 0 and at most 1, not {fraction}"
            )));
        }
        let op = Arc::clone(&self.ops).lock_owned().await;
        let me = Arc::clone(self);
        let (n, v, a) = (name.to_string(), version.to_string(), actor.to_string());
        tokio::task::spawn_blocking(move || {
            let _op = op;
            me.start_shadow_blocking(&n, &v, fraction, &a)
        })
        .await
        .map_err(super::worker)?
    }

    fn start_shadow_blocking(
        &self,
        name: &str,
        version: &str,
        fraction: f64,
        actor: &str,
    ) -> Result<ShadowReport, ManageError> {
        let id = format!("{name}@{version}");
        let record = self
            .registry
            .get(name, version)?
            .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
        if record.kind != Kind::Score {
            return Err(ManageError::Shadow(format!(
                "{id} is a chat model; shadow evaluation compares scores"
            )));
        }
        if !matches!(record.state, State::Staged | State::Ready | State::Retired) {
            return Err(RegistryError::WrongState {
                id,
                state: record.state.as_str(),
                what: "a shadow candidate must be staged, ready or retired".into(),
            }
            .into());
        }
        let active = self.registry.active(name)?.ok_or_else(|| {
            ManageError::Shadow(format!("{name} has no active version to compare with"))
        })?;
        let dir = self.store.open_version(name, version)?;
        let current = self.store.open_version(name, &active)?;
        let changes = schema::breaking_changes(&current.manifest, &dir.manifest);
        if !changes.is_empty() {
            return Err(ManageError::Shadow(format!(
                "{id} cannot shadow {name}@{active}: {}",
                changes.join("; ")
            )));
        }
        let variant = super::variant::choose(&dir.manifest, self.hardware())
            .map_err(ManageError::NoVariant)?;
        // No drift tracker: the candidate sees a sample, not the population.
        let candidate = crate::score::start_version(
            dir,
            variant.as_deref(),
            &self.load_context.score_metrics,
            self.load_context.score_queue_capacity,
            None,
            &self.load_context.faults,
        )
        .map_err(|e| ManageError::Load {
            id: id.clone(),
            source: Box::new(e.into()),
        })?;
        let shadow = Arc::new(Shadow::new(Arc::new(candidate), active.clone(), fraction));
        let report = shadow.report();
        if let Some(old) = self.shadows.set(shadow) {
            self.note_shadow_end(name, &old.report(), actor, "replaced");
        }
        self.registry.note_action(
            actor,
            "shadow",
            name,
            Some(version),
            format!("shadow of {active} on {:.1}% of requests", fraction * 100.0),
        )?;
        tracing::info!(model = %id, active = %active, fraction, "shadow evaluation started");
        Ok(report)
    }

    /// Stops the shadow of `name`; returns its final report.
    pub async fn stop_shadow(&self, name: &str, actor: &str) -> Result<ShadowReport, ManageError> {
        let _op = self.ops.lock().await;
        let shadow = self
            .shadows
            .remove(name)
            .ok_or_else(|| ManageError::NoShadow(name.to_string()))?;
        let report = shadow.report();
        self.note_shadow_end(name, &report, actor, "stopped");
        Ok(report)
    }

    pub fn shadow_report(&self, name: &str) -> Result<ShadowReport, ManageError> {
        self.shadows
            .get(name)
            .map(|s| s.report())
            .ok_or_else(|| ManageError::NoShadow(name.to_string()))
    }

    fn note_shadow_end(&self, name: &str, report: &ShadowReport, actor: &str, how: &str) {
        let detail = format!(
            "shadow {how}: {} rows, agreement {}, mean abs diff {}",
            report.rows,
            report.agreement.map_or("n/a".into(), |a| format!("{a:.4}")),
            report
                .mean_abs_diff
                .map_or("n/a".into(), |d| format!("{d:.2e}")),
        );
        if let Err(e) =
            self.registry
                .note_action(actor, "shadow", name, Some(&report.candidate), detail)
        {
            tracing::warn!(error = %e, "shadow end not recorded in the history");
        }
    }

    /// An activation that requires a shadow pass: the version must be the one in
    /// shadow, with enough compared rows and agreement.
    pub(super) fn check_shadow_pass(&self, name: &str, version: &str) -> Result<(), ManageError> {
        let report = self.shadow_report(name)?;
        let (min_rows, min_agreement) = self.load_context.shadow_pass;
        let agreement = report.agreement.unwrap_or(0.0);
        let sampled = report.stats.requests.max(1);
        // A candidate that failed on any sampled request, or missed more than a tenth of
        // them (its queue full), has not shown how it behaves.
        let incomplete = report.stats.failed > 0 || report.stats.skipped * 10 > sampled;
        if report.candidate != version
            || report.rows < min_rows
            || agreement < min_agreement
            || incomplete
        {
            return Err(ManageError::Shadow(format!(
                "{name}@{version} has not passed shadow evaluation: {} in shadow, {} rows compared (need {min_rows}), agreement {agreement:.4} (need {min_agreement}), {} failed and {} skipped of {} sampled requests",
                report.candidate,
                report.rows,
                report.stats.failed,
                report.stats.skipped,
                report.stats.requests
            )));
        }
        Ok(())
    }

    /// A version being removed stops shadowing (its numbers must not pass a later
    /// import under the same version).
    pub(super) fn end_shadow_of(&self, name: &str, version: &str, actor: &str) {
        if self
            .shadows
            .get(name)
            .is_some_and(|s| s.candidate.manifest.version == version)
        {
            if let Some(old) = self.shadows.remove(name) {
                self.note_shadow_end(name, &old.report(), actor, "ended by the removal");
            }
        }
    }

    /// After a switch: a shadow compared against the old active version ends.
    pub(super) fn end_shadow_after_switch(&self, name: &str, actor: &str) {
        if let Some(old) = self.shadows.remove(name) {
            self.note_shadow_end(name, &old.report(), actor, "ended by the switch");
        }
    }
}
