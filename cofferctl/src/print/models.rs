//! Model versions: the list, one model, one version with its manifest, the history
//! table, and the lines of activation, pin, removal and gc.

use coffer_admin_api::models::{
    Activation, GcReport, HistoryEntry, ModelDetail, ModelEntry, ModelList, Pinned, Unpinned,
    VersionDetail, VersionRecord,
};
use coffer_models::Manifest;

use super::line;
use crate::format::{human_size, mb, one_line, or_dash, size, time_ms, wire_name};

/// `models list`: every version; `*` marks the active one.
pub fn model_list(list: &ModelList) -> String {
    let mut out = String::new();
    if list.models.iter().all(|m| m.versions.is_empty()) {
        line!(out, "no model versions installed");
        return out;
    }
    line!(
        out,
        "{:<24} {:<12} {:<20} {:<6} {:<12} {:>10} {:<20} REASON",
        "NAME",
        "VERSION",
        "STATE",
        "KIND",
        "VARIANT",
        "SIZE",
        "INSTALLED"
    );
    for m in &list.models {
        for v in &m.versions {
            line!(
                out,
                "{:<24} {:<12} {:<20} {:<6} {:<12} {:>10} {:<20} {}",
                v.name,
                v.version,
                state_mark(m, v),
                wire_name(&v.kind),
                or_dash(v.variant.as_deref()),
                size(v.bytes),
                time_ms(v.installed_at),
                one_line(v.reason.as_deref().unwrap_or(""), 60)
            );
        }
    }
    out
}

/// The state with `*` for the active version and `(pinned)` for the pinned one.
fn state_mark(m: &ModelEntry, v: &VersionRecord) -> String {
    let mut state = v.state.as_str().to_string();
    if m.active.as_deref() == Some(v.version.as_str()) {
        state.push('*');
    }
    if m.pinned.as_deref() == Some(v.version.as_str()) {
        state.push_str(" (pinned)");
    }
    state
}

/// `key: value` lines for one version record.
fn record(out: &mut String, r: &VersionRecord) {
    line!(out, "{}", r.id());
    line!(out, "  state:         {}", r.state.as_str());
    line!(
        out,
        "  kind:          {} ({})",
        wire_name(&r.kind),
        wire_name(&r.format)
    );
    line!(out, "  variant:       {}", or_dash(r.variant.as_deref()));
    line!(out, "  size:          {}", human_size(r.bytes));
    line!(out, "  installed:     {}", time_ms(r.installed_at));
    line!(out, "  updated:       {}", time_ms(r.updated_at));
    if let Some(reason) = &r.reason {
        line!(out, "  reason:        {}", one_line(reason, 500));
    }
    line!(out, "  manifest:      sha256 {}", r.manifest_sha256);
    if r.allow_schema_change {
        line!(out, "  schema change: allowed at import");
    }
}

/// `models show NAME`.
pub fn model(m: &ModelDetail) -> String {
    let mut out = String::new();
    line!(out, "{}", m.model.name);
    line!(
        out,
        "  active:        {}",
        or_dash(m.model.active.as_deref())
    );
    line!(
        out,
        "  pinned:        {}",
        or_dash(m.model.pinned.as_deref())
    );
    for v in &m.model.versions {
        line!(out);
        record(&mut out, v);
    }
    line!(out);
    out.push_str(&history(&m.history, false));
    out
}

/// `models show NAME VERSION`: the record, its manifest, its history.
pub fn version(v: &VersionDetail) -> String {
    let mut out = String::new();
    record(&mut out, &v.record);
    match &v.manifest {
        None => line!(out, "  (its manifest cannot be read from the store)"),
        Some(m) => manifest(&mut out, m),
    }
    line!(out);
    out.push_str(&history(&v.history, false));
    out
}

fn manifest(out: &mut String, m: &Manifest) {
    if let Some(description) = &m.description {
        line!(out, "  description:   {}", one_line(description, 500));
    }
    line!(out, "  files:");
    for f in &m.files {
        line!(
            out,
            "    {:<32} {:>10} {:<6} sha256 {}",
            f.path,
            human_size(f.size),
            wire_name(&f.role),
            f.sha256
        );
    }
    let l = &m.lineage;
    let lineage: Vec<(&str, &str)> = [
        ("base", &l.base),
        ("quantization", &l.quantization),
        ("distilled_from", &l.distilled_from),
        ("training_data", &l.training_data),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect();
    if !lineage.is_empty() {
        line!(out, "  lineage:");
        for (k, v) in lineage {
            line!(out, "    {:<15} {}", format!("{k}:"), one_line(v, 200));
        }
    }
    if !m.variants.is_empty() {
        line!(out, "  variants (in order of preference):");
        for v in &m.variants {
            let mut text = format!("    {:<14} file {}", v.name, v.file);
            if let Some(q) = &v.quantization {
                text.push_str(&format!(", {q}"));
            }
            match v.gpu_memory_mib {
                Some(mib) => text.push_str(&format!(", GPU with {mib} MiB free")),
                None => text.push_str(", CPU"),
            }
            line!(out, "{text}");
        }
    }
    for (title, tensors) in [("inputs", &m.io.inputs), ("outputs", &m.io.outputs)] {
        let tensors: Vec<String> = tensors
            .iter()
            .map(|t| {
                let shape = serde_json::to_string(&t.shape).unwrap_or_default();
                format!("{} {} {shape}", t.name, t.datatype.as_str())
            })
            .collect();
        if !tensors.is_empty() {
            line!(out, "  {:<14} {}", format!("{title}:"), tensors.join(", "));
        }
    }
}

/// The history table, oldest first; `with_name` adds a NAME column (history across
/// models).
pub fn history(entries: &[HistoryEntry], with_name: bool) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        line!(out, "no history");
        return out;
    }
    let name_col = |name: &str| {
        if with_name {
            format!("{name:<24} ")
        } else {
            String::new()
        }
    };
    line!(
        out,
        "{:<20} {}{:<12} {:<12} {:<12} DETAIL",
        "TIME",
        name_col("NAME"),
        "ACTOR",
        "ACTION",
        "VERSION"
    );
    for h in entries {
        line!(
            out,
            "{:<20} {}{:<12} {:<12} {:<12} {}",
            time_ms(h.at),
            name_col(&h.name),
            h.actor,
            h.action,
            or_dash(h.version.as_deref()),
            one_line(&h.detail, 300)
        );
    }
    out
}

/// `models activate` and `models rollback`.
pub fn activation(a: &Activation) -> String {
    let id = format!("{}@{}", a.name, a.version);
    if !a.changed {
        return format!("{id} was already active\n");
    }
    let mut notes = Vec::new();
    if let Some(previous) = &a.previous {
        notes.push(format!("was {previous}"));
    }
    if let Some(variant) = &a.variant {
        notes.push(format!("variant {variant}"));
    }
    if notes.is_empty() {
        format!("{id} active\n")
    } else {
        format!("{id} active ({})\n", notes.join("; "))
    }
}

/// `models import`: the stored version's state (and the gate's summary when it passed).
pub fn imported(r: &VersionRecord) -> String {
    match &r.reason {
        Some(reason) if r.state.as_str() != "failed" => format!(
            "imported {}: {} ({})\n",
            r.id(),
            r.state.as_str(),
            one_line(reason, 200)
        ),
        _ => format!("imported {}: {}\n", r.id(), r.state.as_str()),
    }
}

pub fn pinned(p: &Pinned) -> String {
    format!("{} pinned to {}\n", p.name, p.pinned)
}

pub fn unpinned(u: &Unpinned) -> String {
    match &u.unpinned {
        Some(was) => format!("{} unpinned (was pinned to {was})\n", u.name),
        None => format!("{} was not pinned\n", u.name),
    }
}

pub fn removed(r: &VersionRecord) -> String {
    format!(
        "removed {}; `cofferctl models gc` deletes the files no other version uses\n",
        r.id()
    )
}

pub fn gc(g: &GcReport) -> String {
    format!(
        "removed {} blobs ({} MB) and {} staging entries\n",
        g.blobs_removed,
        mb(g.bytes_freed),
        g.staging_removed
    )
}

#[cfg(test)]
mod tests;
