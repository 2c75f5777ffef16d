//! Building Coffer's packages from binaries that are already built: `cofferd` (cofferd,
//! cofferctl) and `coffer-agent`, as .deb through cargo-deb and as .rpm through
//! cargo-generate-rpm, from the metadata in the crates' `Cargo.toml`. The release build
//! (`packaging/build`) and the package tests (`tests/`) both go through here; the files
//! that go into the packages live beside this crate (`etc/`, `scripts/`, `sysusers/`) and
//! in `systemd/`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod sandbox;

/// A package step that failed, with what the tool said.
#[derive(Debug)]
pub enum PackageError {
    Spawn {
        tool: String,
        error: std::io::Error,
    },
    Failed {
        tool: String,
        output: String,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for PackageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spawn { tool, error } => write!(f, "cannot run {tool}: {error}"),
            Self::Failed { tool, output } => write!(f, "{tool} failed:\n{output}"),
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for PackageError {}

/// The workspace root (the directory above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Each package: its (crate) name, its crate's directory, the binaries it carries.
pub const PACKAGES: &[(&str, &str, &[&str])] = &[
    ("cofferd", "daemon", &["cofferd", "cofferctl"]),
    ("coffer-agent", "agent", &["coffer-agent"]),
];

/// Runs a command to completion; its output is returned, or the error carries it.
pub fn run(command: &mut Command) -> Result<String, PackageError> {
    let tool = format!("{command:?}");
    let output = command.output().map_err(|error| PackageError::Spawn {
        tool: tool.clone(),
        error,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(PackageError::Failed { tool, output: text })
    }
}

/// Lays out `binaries_dir`'s binaries as `<staging>/release/NAME`, the path that the
/// packaging metadata names, stripped as Debian strips binaries (`--strip-unneeded`).
pub fn stage(binaries_dir: &Path, staging: &Path) -> Result<(), PackageError> {
    let release = staging.join("release");
    std::fs::create_dir_all(&release).map_err(|error| PackageError::Io {
        path: release.clone(),
        error,
    })?;
    for (_, _, binaries) in PACKAGES {
        for name in *binaries {
            run(Command::new("strip")
                .arg("--strip-unneeded")
                .arg("-o")
                .arg(release.join(name))
                .arg(binaries_dir.join(name)))?;
        }
    }
    Ok(())
}

/// Builds the .deb of `package` (its `variant`, e.g. `cuda` for cofferd-cuda) from the
/// staged binaries; returns its path.
pub fn build_deb(
    package: &str,
    variant: Option<&str>,
    staging: &Path,
    revision: u32,
    out: &Path,
) -> Result<PathBuf, PackageError> {
    let mut command = Command::new("cargo");
    command
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", staging)
        .args(["deb", "--no-build", "--no-strip", "--fast", "-p", package])
        .arg("--deb-revision")
        .arg(revision.to_string())
        .arg("-o")
        .arg(out);
    if let Some(variant) = variant {
        command.args(["--variant", variant]);
    }
    let text = run(&mut command)?;
    last_path(&text, ".deb")
}

/// Builds the .rpm of the crate in `crate_dir` (cargo-generate-rpm takes the directory;
/// `variant` as for [`build_deb`]) from the staged binaries; returns its path.
pub fn build_rpm(
    crate_dir: &str,
    variant: Option<&str>,
    staging: &Path,
    out: &Path,
) -> Result<PathBuf, PackageError> {
    let before = rpms_in(out);
    let mut command = Command::new("cargo");
    if let Some(variant) = variant {
        command.args(["generate-rpm", "--variant", variant]);
    } else {
        command.arg("generate-rpm");
    }
    run(command
        .current_dir(workspace_root())
        .args(["--payload-compress", "gzip", "-p", crate_dir])
        .arg("--target-dir")
        .arg(staging)
        .arg("-o")
        .arg(out))?;
    rpms_in(out)
        .into_iter()
        .find(|p| !before.contains(p))
        .ok_or_else(|| PackageError::Failed {
            tool: "cargo generate-rpm".into(),
            output: format!("no new .rpm in {}", out.display()),
        })
}

fn rpms_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rpm"))
                .collect()
        })
        .unwrap_or_default()
}

fn last_path(text: &str, suffix: &str) -> Result<PathBuf, PackageError> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(suffix))
        .map(PathBuf::from)
        .ok_or_else(|| PackageError::Failed {
            tool: "cargo deb".into(),
            output: text.to_string(),
        })
}

/// `systemd-analyze security --offline=true` exposure of a unit file (0.0–10.0).
pub fn exposure(unit: &Path) -> Result<f64, PackageError> {
    let text = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit))?;
    text.lines()
        .find_map(|l| {
            let rest = l.split("Overall exposure level for ").nth(1)?;
            rest.split_whitespace().nth(1)?.parse().ok()
        })
        .ok_or_else(|| PackageError::Failed {
            tool: "systemd-analyze security".into(),
            output: text,
        })
}
