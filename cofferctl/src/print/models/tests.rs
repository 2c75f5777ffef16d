//! The model printers against typed answers.

use coffer_admin_api::models::VersionState;
use coffer_models::{Format, Kind};

use super::*;

fn record(version: &str, state: VersionState, reason: Option<&str>) -> VersionRecord {
    VersionRecord {
        name: "credit-lr".into(),
        version: version.into(),
        kind: Kind::Score,
        format: Format::Onnx,
        state,
        reason: reason.map(str::to_string),
        variant: None,
        manifest_sha256: "ab".repeat(32),
        bytes: 4_200,
        installed_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        allow_schema_change: false,
    }
}

#[test]
fn the_list_marks_the_active_and_pinned_versions() {
    let list = ModelList {
        models: vec![ModelEntry {
            name: "credit-lr".into(),
            active: Some("2.0.0".into()),
            pinned: Some("1.0.0".into()),
            versions: vec![
                record("1.0.0", VersionState::Retired, None),
                record("2.0.0", VersionState::Active, Some("auc 0.79 >= 0.75")),
            ],
        }],
    };
    let text = model_list(&list);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].contains("retired (pinned)"), "{text}");
    assert!(
        lines[2].contains("active*") && lines[2].contains("score"),
        "{text}"
    );
    assert!(lines[2].ends_with("auc 0.79 >= 0.75"), "{text}");
    assert!(lines[2].contains("2023-11-14T22:13:20Z"), "{text}");
}

#[test]
fn an_empty_store_says_so() {
    assert_eq!(
        model_list(&ModelList { models: vec![] }),
        "no model versions installed\n"
    );
}

#[test]
fn a_version_shows_its_record_manifest_and_history() {
    let manifest = Manifest::parse(
        "name = \"credit-lr\"\nversion = \"2.0.0\"\nkind = \"score\"\nformat = \"onnx\"\n\
         description = \"German credit\\u001b[2J\"\n\
         [[files]]\npath = \"model.onnx\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 4200\nrole = \"model\"\n\
         [lineage]\nbase = \"sklearn\"\n\
         [[io.inputs]]\nname = \"features\"\ndatatype = \"FP32\"\nshape = [-1, 61]\n\
         [[io.outputs]]\nname = \"probabilities\"\ndatatype = \"FP32\"\nshape = [-1, 2]\n",
    )
    .unwrap();
    let detail = VersionDetail {
        record: record("2.0.0", VersionState::Ready, None),
        manifest: Some(manifest),
        history: vec![HistoryEntry {
            seq: 1,
            at: 0,
            actor: "uid 0".into(),
            action: "import".into(),
            name: "credit-lr".into(),
            version: Some("2.0.0".into()),
            detail: "line one\nline two".into(),
        }],
    };
    let text = version(&detail);
    assert!(
        text.starts_with("credit-lr@2.0.0\n  state:         ready\n"),
        "{text}"
    );
    assert!(text.contains("  kind:          score (onnx)"), "{text}");
    assert!(
        text.contains("  description:   German credit [2J"),
        "{text}"
    );
    assert!(
        text.contains("model.onnx") && text.contains("4.2 kB"),
        "{text}"
    );
    assert!(text.contains("    base:           sklearn"), "{text}");
    assert!(
        text.contains("  inputs:        features FP32 [-1,61]"),
        "{text}"
    );
    assert!(text.contains("line one line two"), "{text}");
}

#[test]
fn activation_lines() {
    let a = |changed, previous: Option<&str>, variant: Option<&str>| Activation {
        name: "m".into(),
        version: "2".into(),
        previous: previous.map(str::to_string),
        variant: variant.map(str::to_string),
        changed,
    };
    assert_eq!(
        activation(&a(false, None, None)),
        "m@2 was already active\n"
    );
    assert_eq!(activation(&a(true, None, None)), "m@2 active\n");
    assert_eq!(
        activation(&a(true, Some("1"), Some("cpu"))),
        "m@2 active (was 1; variant cpu)\n"
    );
}

#[test]
fn an_import_that_failed_its_gate_does_not_show_the_reason_as_a_summary() {
    let ok = record("2", VersionState::Ready, Some("no evaluation gate"));
    assert_eq!(
        imported(&ok),
        "imported credit-lr@2: ready (no evaluation gate)\n"
    );
    let failed = record("2", VersionState::Failed, Some("auc 0.5 < 0.75"));
    assert_eq!(imported(&failed), "imported credit-lr@2: failed\n");
}
