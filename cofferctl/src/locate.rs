//! Where the admin socket and the audit directory are: the command line first, then
//! `$COFFER_ADMIN_SOCKET`, then the cofferd configuration file given with `--config`,
//! then the packaged defaults. Only the keys needed are read from the file; checking
//! the whole file is `cofferd check-config`'s job.

use std::path::{Path, PathBuf};

use crate::args::Cli;

/// cofferd's `state.dir` when its configuration does not set one.
const DEFAULT_STATE_DIR: &str = "/var/lib/coffer";

/// The admin socket to call.
pub fn socket(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    if let Some(s) = std::env::var_os("COFFER_ADMIN_SOCKET") {
        return Ok(PathBuf::from(s));
    }
    let socket = match &cli.config {
        Some(path) => config_string(&read(path)?, "admin", "socket"),
        None => None,
    };
    Ok(PathBuf::from(socket.unwrap_or_else(|| {
        coffer_admin_api::DEFAULT_SOCKET.into()
    })))
}

/// The audit directory to verify: `dir`, else the configuration's `audit.dir` (default
/// `<state.dir>/audit`), else the packaged default.
pub fn audit_dir(cli: &Cli, dir: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = dir {
        return Ok(d.to_path_buf());
    }
    let Some(path) = &cli.config else {
        return Ok(Path::new(DEFAULT_STATE_DIR).join("audit"));
    };
    let config = read(path)?;
    if let Some(d) = config_string(&config, "audit", "dir") {
        return Ok(PathBuf::from(d));
    }
    let state = config_string(&config, "state", "dir").unwrap_or_else(|| DEFAULT_STATE_DIR.into());
    Ok(Path::new(&state).join("audit"))
}

fn read(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{}: {}", path.display(), e.message()))
}

/// `[section] key = "..."`, when it is a string.
fn config_string(config: &toml::Table, section: &str, key: &str) -> Option<String> {
    config.get(section)?.get(key)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from([&["cofferctl"], args, &["keys", "list"]].concat()).unwrap()
    }

    #[test]
    fn the_command_line_then_the_config_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cofferd.toml");
        std::fs::write(
            &config,
            "[admin]\nsocket = \"/srv/coffer/admin.sock\"\n[state]\ndir = \"/srv/coffer\"\n",
        )
        .unwrap();
        let c = config.to_str().unwrap();
        // The environment is not set in tests that run cofferctl's library.
        if std::env::var_os("COFFER_ADMIN_SOCKET").is_none() {
            assert_eq!(
                socket(&cli(&["--config", c])).unwrap(),
                Path::new("/srv/coffer/admin.sock")
            );
            assert_eq!(
                socket(&cli(&[])).unwrap(),
                Path::new(coffer_admin_api::DEFAULT_SOCKET)
            );
        }
        assert_eq!(
            socket(&cli(&["--socket", "/x.sock", "--config", c])).unwrap(),
            Path::new("/x.sock")
        );
        assert_eq!(
            audit_dir(&cli(&["--config", c]), None).unwrap(),
            Path::new("/srv/coffer/audit")
        );
        assert_eq!(
            audit_dir(&cli(&[]), None).unwrap(),
            Path::new("/var/lib/coffer/audit")
        );
        assert_eq!(
            audit_dir(&cli(&["--config", c]), Some(Path::new("/a"))).unwrap(),
            Path::new("/a")
        );
    }

    #[test]
    fn a_broken_config_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cofferd.toml");
        std::fs::write(&config, "[admin\n").unwrap();
        let e = audit_dir(&cli(&["--config", config.to_str().unwrap()]), None).unwrap_err();
        assert!(e.contains("cofferd.toml"), "{e}");
        let missing = dir.path().join("none.toml");
        let e = audit_dir(&cli(&["--config", missing.to_str().unwrap()]), None).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
