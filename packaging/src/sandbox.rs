//! Running the installed units under their own systemd sandbox, on hosts where systemd is
//! not PID 1 (build containers, CI machines): a throwaway `systemd-nspawn` container boots
//! this host's own root file system through an overlay on tmpfs, so that it sees what dpkg
//! installed and leaves nothing behind. Inside it, systemd starts the installed service
//! with its shipped unit, then runs each [`Probe`], a one-shot command under the sandbox
//! directives of another shipped unit (its `[Service]` lines, with its user swapped in
//! where the probe says), and reports how each ended.
//!
//! Everything happens in a private mount namespace (`unshare --mount`): the overlay, the
//! tmpfs under it and nspawn's own scratch directory vanish with the namespace, whatever
//! becomes of the test. The container has its own network namespace (loopback only).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{PackageError, run};

/// One command run inside the container under a unit's sandbox.
#[derive(Debug, Clone)]
pub struct Probe {
    /// A short name: the probe's unit is `coffer-probe-NAME.service`.
    pub name: String,
    /// The user and group it runs as (`User=`, `Group=`).
    pub user: String,
    pub group: String,
    /// `SupplementaryGroups=`, when the probe has any.
    pub supplementary_groups: Option<String>,
    /// The command line (`ExecStart=`), absolute program first.
    pub command: Vec<String>,
}

/// How a probe ended inside the container.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    /// The main process's exit status (`ExecMainStatus`), `None` when it never ran.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ProbeOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == Some(0)
    }
}

/// What the container reported.
#[derive(Debug)]
pub struct SandboxReport {
    /// Whether `systemctl start` of the service succeeded (for `Type=notify`: it became
    /// ready).
    pub service_started: bool,
    /// The service's `ActiveState` after the probes ran.
    pub service_state: String,
    /// The service's journal in the container.
    pub service_log: String,
    /// Each probe's outcome, in the order given.
    pub probes: Vec<(String, ProbeOutcome)>,
}

impl SandboxReport {
    pub fn probe(&self, name: &str) -> &ProbeOutcome {
        self.probes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
            .unwrap_or_else(|| panic!("no probe named {name}"))
    }
}

/// The directives of a unit's `[Service]` section that make up its sandbox: everything but
/// what starts, restarts, notifies and names the process's user.
const NOT_SANDBOX: &[&str] = &[
    "Type",
    "NotifyAccess",
    "ExecStart",
    "ExecStartPre",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "Restart",
    "RestartSec",
    "WatchdogSec",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "User",
    "Group",
    "SupplementaryGroups",
];

/// A one-shot unit that runs `probe` under the sandbox of the unit whose text is `unit`,
/// writing its output to `/out/NAME.out` and `/out/NAME.err`.
pub fn probe_unit(unit: &str, probe: &Probe) -> String {
    let mut text = format!(
        "[Unit]\nDescription=Coffer sandbox probe {}\n\n[Service]\n",
        probe.name
    );
    let mut in_service = false;
    for line in unit.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_service = trimmed == "[Service]";
            continue;
        }
        if !in_service || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        if !NOT_SANDBOX.contains(&key) {
            text.push_str(trimmed);
            text.push('\n');
        }
    }
    let _ = writeln!(text, "Type=oneshot");
    let _ = writeln!(text, "User={}", probe.user);
    let _ = writeln!(text, "Group={}", probe.group);
    if let Some(groups) = &probe.supplementary_groups {
        let _ = writeln!(text, "SupplementaryGroups={groups}");
    }
    let _ = writeln!(text, "ExecStart={}", probe.command.join(" "));
    let _ = writeln!(text, "StandardOutput=file:/out/{}.out", probe.name);
    let _ = writeln!(text, "StandardError=file:/out/{}.err", probe.name);
    text
}

/// The unit that drives the container: starts the service, runs the probes one after the
/// other, writes what happened under `/out`, and powers the container off.
fn driver_unit(service: &str, probes: &[Probe]) -> String {
    let mut script = format!("systemctl start {service}; echo $? > /out/service.started; ");
    for probe in probes {
        let unit = format!("coffer-probe-{}.service", probe.name);
        let _ = write!(
            script,
            "systemctl start {unit}; systemctl show -P ExecMainStatus {unit} > /out/{name}.status; ",
            name = probe.name
        );
    }
    let _ = write!(
        script,
        "systemctl show -P ActiveState {service} > /out/service.state; \
         journalctl -u {service} -o cat --no-pager > /out/service.log 2>&1"
    );
    format!(
        "[Unit]\nDescription=Coffer sandbox check\n\n[Service]\nType=oneshot\n\
         ExecStart=/bin/sh -c '{script}'\nExecStopPost=/bin/systemctl --no-block poweroff\n"
    )
}

/// Boots a container of this host's root, starts `service` (an installed unit) in it, runs
/// `probes` under the sandbox of the installed unit `sandbox_of`, and reports. `copies` are
/// files or directories placed into the container's file system first (host path,
/// absolute path inside), readable by everyone. `work` is a scratch directory on the host.
pub fn boot_and_probe(
    service: &str,
    sandbox_of: &str,
    probes: &[Probe],
    copies: &[(PathBuf, &str)],
    work: &Path,
    limit: Duration,
) -> Result<SandboxReport, PackageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| PackageError::Io { path, error }
    };
    let _ = std::fs::remove_dir_all(work);
    let out = work.join("out");
    let units = work.join("units");
    for dir in [&out, &units] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let sandbox_unit = Path::new("/lib/systemd/system").join(sandbox_of);
    let sandbox_text = std::fs::read_to_string(&sandbox_unit).map_err(io(&sandbox_unit))?;
    for probe in probes {
        let path = units.join(format!("coffer-probe-{}.service", probe.name));
        std::fs::write(&path, probe_unit(&sandbox_text, probe)).map_err(io(&path))?;
    }
    let driver = units.join("coffer-sandbox-check.service");
    std::fs::write(&driver, driver_unit(service, probes)).map_err(io(&driver))?;

    let mut copy_lines = String::new();
    for (from, to) in copies {
        let _ = writeln!(
            copy_lines,
            "mkdir -p \"$root$(dirname '{to}')\" && cp -r '{}' \"$root{to}\" && chmod -R a+rX \"$root{to}\"",
            from.display()
        );
    }
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(io(&mnt))?;
    let script = format!(
        r#"set -eu
mnt='{mnt}'
mount -t tmpfs -o mode=0755 coffer-sandbox "$mnt"
mkdir -p "$mnt/upper" "$mnt/work" "$mnt/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$mnt/upper,workdir=$mnt/work" "$mnt/root"
root="$mnt/root"
cp '{units}'/*.service "$root/etc/systemd/system/"
{copy_lines}
# nspawn's scratch directory must be on tmpfs (it removes it afterwards).
mkdir -p /run/systemd/nspawn
mount -t tmpfs -o mode=0755 coffer-nspawn /run/systemd/nspawn
exec timeout --kill-after=10 {secs} systemd-nspawn --quiet --directory="$root" \
  --machine=coffer-check-$$ --register=no --keep-unit --private-network \
  --bind='{out}':/out --boot systemd.unit=coffer-sandbox-check.service
"#,
        mnt = mnt.display(),
        units = units.display(),
        out = out.display(),
        secs = limit.as_secs(),
    );
    let boot = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .map_err(|error| PackageError::Spawn {
            tool: "unshare systemd-nspawn".into(),
            error,
        })?;
    let boot_log = format!(
        "{}{}",
        String::from_utf8_lossy(&boot.stdout),
        String::from_utf8_lossy(&boot.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out.join(name)).ok();
    let Some(started) = read("service.started") else {
        return Err(PackageError::Failed {
            tool: format!("systemd-nspawn (boot, exit {:?})", boot.status.code()),
            output: boot_log,
        });
    };
    let mut outcomes = Vec::new();
    for probe in probes {
        let status = read(&format!("{}.status", probe.name))
            .and_then(|s| s.trim().parse().ok())
            .filter(|_| read(&format!("{}.err", probe.name)).is_some());
        outcomes.push((
            probe.name.clone(),
            ProbeOutcome {
                status,
                stdout: read(&format!("{}.out", probe.name)).unwrap_or_default(),
                stderr: read(&format!("{}.err", probe.name)).unwrap_or_default(),
            },
        ));
    }
    Ok(SandboxReport {
        service_started: started.trim() == "0",
        service_state: read("service.state").unwrap_or_default().trim().to_string(),
        service_log: read("service.log").unwrap_or_default(),
        probes: outcomes,
    })
}

/// Whether this host can boot such a container: root, `unshare` and `systemd-nspawn`.
pub fn can_boot_containers() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if run(Command::new("id").arg("-u"))
        .map(|s| s.trim() != "0")
        .unwrap_or(true)
    {
        missing.push("root");
    }
    for tool in ["unshare", "systemd-nspawn"] {
        if run(Command::new("sh").args(["-c", &format!("command -v {tool}")])).is_err() {
            missing.push(tool);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "[Unit]\nDescription=x\n\n[Service]\nType=notify\nUser=svc\n\
        ExecStart=/usr/bin/x run\nPrivateUsers=yes\n# a comment\nProtectSystem=strict\n\
        WatchdogSec=60s\n\n[Install]\nWantedBy=multi-user.target\n";

    fn probe() -> Probe {
        Probe {
            name: "p".into(),
            user: "someone".into(),
            group: "somegroup".into(),
            supplementary_groups: Some("extra".into()),
            command: vec!["/usr/bin/tool".into(), "list".into()],
        }
    }

    #[test]
    fn a_probe_unit_keeps_the_sandbox_and_swaps_in_its_user_and_command() {
        let text = probe_unit(UNIT, &probe());
        for kept in ["PrivateUsers=yes", "ProtectSystem=strict"] {
            assert!(text.lines().any(|l| l == kept), "{kept} missing:\n{text}");
        }
        for dropped in [
            "Type=notify",
            "User=svc",
            "ExecStart=/usr/bin/x run",
            "WatchdogSec=60s",
        ] {
            assert!(
                !text.lines().any(|l| l == dropped),
                "{dropped} kept:\n{text}"
            );
        }
        for added in [
            "Type=oneshot",
            "User=someone",
            "Group=somegroup",
            "SupplementaryGroups=extra",
            "ExecStart=/usr/bin/tool list",
            "StandardError=file:/out/p.err",
        ] {
            assert!(text.lines().any(|l| l == added), "{added} missing:\n{text}");
        }
        assert!(
            !text.contains("WantedBy"),
            "[Install] is not the sandbox:\n{text}"
        );
    }

    #[test]
    fn the_driver_starts_the_service_then_each_probe_and_powers_off() {
        let text = driver_unit("cofferd.service", &[probe()]);
        let start = text.find("systemctl start cofferd.service").unwrap();
        let probe_at = text.find("systemctl start coffer-probe-p.service").unwrap();
        assert!(start < probe_at);
        assert!(text.contains("ExecStopPost=/bin/systemctl --no-block poweroff"));
    }
}
