//! The packages as branch IT gets them: both .debs build and pass lintian, install with
//! dpkg on this machine (users, directories, owners and modes, the shipped config checks,
//! a first start that listens on loopback with a self-signed certificate and says so),
//! upgrade keeping an edited config and the state, remove keeping state, purge deleting
//! it; both .rpms have the expected files, config flags and scripts and install into an
//! rpm root; every unit scores ≤ 1.5 in `systemd-analyze security --offline=true` and
//! verifies clean.
//!
//! The packages carry the binaries of this test build (debug, stripped), not a release
//! build: what is tested is the packaging. Tools missing here (root, dpkg, lintian, rpm,
//! cargo-deb, cargo-generate-rpm, systemd-analyze) skip a test locally with a message and
//! fail it under CI, whose `.ci/run` installs them.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use coffer_packaging::sandbox::{self, Probe};
use coffer_packaging::{PACKAGES, build_deb, build_rpm, exposure, run, workspace_root};

use common::{
    BUILD, assert_lintian_clean, have, out_dir, report, requires, sh, staging, target_dir,
};

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).is_ok_and(|out| out.trim() == "0")
}

/// (owner name, group name, mode) of a path.
fn owner_mode(path: &str) -> (String, String, u32) {
    let out = sh(&format!("stat -c '%U %G %a' {path}"));
    let mut f = out.split_whitespace();
    let (u, g, m) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
    (u.into(), g.into(), u32::from_str_radix(m, 8).unwrap())
}

fn assert_owner_mode(path: &str, user: &str, group: &str, mode: u32) {
    let got = owner_mode(path);
    assert_eq!(
        got,
        (user.to_string(), group.to_string(), mode),
        "{path}: owner, group, mode"
    );
}

#[test]
fn units_score_at_most_1_5_and_carry_the_required_directives() {
    if !requires(&[("systemd-analyze", have("systemd-analyze"))]) {
        return;
    }
    let dir = workspace_root().join("systemd");
    for unit in ["cofferd.service", "coffer-agent.service"] {
        let path = dir.join(unit);
        let score = exposure(&path).unwrap();
        report(&format!("{unit}: exposure {score:.1} (limit 1.5)\n"));
        assert!(score <= 1.5, "{unit}: exposure {score} > 1.5");
        let text = std::fs::read_to_string(&path).unwrap();
        for line in [
            "Type=notify",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
        assert!(text.contains("\nWatchdogSec="), "{unit} lacks WatchdogSec");
        assert!(
            text.lines()
                .any(|l| l.starts_with("ExecStartPre=") && l.contains("check-config")),
            "{unit} must check its config before starting"
        );
    }
    // cofferd keeps the NVIDIA devices reachable and everything else closed.
    let text = std::fs::read_to_string(dir.join("cofferd.service")).unwrap();
    // No private user namespace: its admin socket's peer credentials would arrive there,
    // where coffer-agent is unmapped (uid 65534), and the agent would be refused.
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("PrivateUsers=")),
        "cofferd.service must not set PrivateUsers="
    );
    assert!(text.lines().any(|l| l == "DevicePolicy=closed"));
    assert!(!text.lines().any(|l| l.starts_with("PrivateDevices=")));
    for device in [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "char-nvidia-frontend",
        "char-nvidia-caps",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("DeviceAllow=") && l.contains(device)),
            "cofferd.service must allow {device}"
        );
    }
}

/// Purges the packages when the lifecycle test ends, passed or not.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "coffer-agent", "cofferd"])
            .output();
        let _ = std::fs::remove_dir_all("/run/coffer");
    }
}

fn as_user(user: &str) -> [String; 4] {
    [
        format!("--reuid={user}"),
        format!("--regid={}", sh(&format!("id -g {user}")).trim()),
        "--init-groups".into(),
        "--".into(),
    ]
}

/// Starts the installed cofferd as its service user on the shipped config, as systemd
/// would, and returns what it logged until ready; then checks who may use the admin
/// socket, and stops it.
fn first_start() -> String {
    sh("install -d -m 0750 -o coffer -g coffer /run/coffer");
    // setpriv execs cofferd as the service user (no wrapper process between the test's
    // SIGTERM and cofferd), with its groups, as systemd's User= would.
    let mut child = Command::new("setpriv")
        .args(as_user("coffer"))
        .args(["/usr/bin/cofferd", "serve", "--config"])
        .arg("/etc/coffer/cofferd.toml")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runuser starts cofferd");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    while !log.contains("cofferd ready") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("cofferd did not become ready on the shipped config:\n{log}");
            }
        }
    }
    let listening = sh("ss -Hltn 'sport = :8443'");
    let as_agent = |args: &[&str]| {
        Command::new("setpriv")
            .args(as_user("coffer-agent"))
            .arg("/usr/bin/cofferctl")
            .args(["--socket", "/run/coffer/admin.sock"])
            .args(args)
            .output()
            .unwrap()
    };
    // The agent role: the agent's own calls, and no key management. It imports and
    // activates a model as its sync does (from a copy it can read wherever the checkout
    // lives).
    let agent = as_agent(&["models", "list"]);
    let agent_keys = as_agent(&["keys", "list"]);
    let copy = std::env::temp_dir().join(format!("coffer-agent-import-{}", std::process::id()));
    sh(&format!(
        "rm -rf {c} && mkdir -p {c} && cp -r {f} {c}/credit-lr && chmod -R a+rX {c}",
        c = copy.display(),
        f = workspace_root()
            .join("models/fixtures/credit-lr/1.0.0")
            .display()
    ));
    let import = as_agent(&[
        "models",
        "import",
        &copy.join("credit-lr").display().to_string(),
    ]);
    let activate = as_agent(&["models", "activate", "credit-lr", "1.0.0"]);
    let _ = std::fs::remove_dir_all(&copy);
    let stranger = Command::new("setpriv")
        .args(as_user("nobody"))
        .arg("/usr/bin/cofferctl")
        .args(["--socket", "/run/coffer/admin.sock", "keys", "list"])
        .output()
        .unwrap();
    sh(&format!("kill -TERM {}", child.id()));
    let status = child.wait().unwrap();
    assert!(status.success(), "cofferd exits 0 on SIGTERM: {status}");
    assert!(
        listening.contains("127.0.0.1:8443") && listening.lines().count() == 1,
        "the shipped config listens on loopback only: {listening}"
    );
    assert!(
        agent.status.success(),
        "coffer-agent may use the admin socket: {}",
        String::from_utf8_lossy(&agent.stderr)
    );
    assert!(
        !stranger.status.success(),
        "another user may not use the admin socket"
    );
    for (what, out) in [("import", &import), ("activate", &activate)] {
        assert!(
            out.status.success(),
            "coffer-agent may {what} a model: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !agent_keys.status.success()
            && String::from_utf8_lossy(&agent_keys.stderr).contains("agent role"),
        "coffer-agent may not manage keys: {}",
        String::from_utf8_lossy(&agent_keys.stderr)
    );
    log
}

/// A probe that runs `program args` as coffer-agent under coffer-agent.service's sandbox.
fn agent_probe(name: &str, program: &str, args: &[&str]) -> Probe {
    let mut command = vec![program.to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    Probe {
        name: name.into(),
        user: "coffer-agent".into(),
        group: "coffer-agent".into(),
        supplementary_groups: Some("coffer".into()),
        command,
    }
}

/// cofferctl's arguments to reach the installed cofferd's admin socket.
fn cofferctl(args: &[&str]) -> Vec<String> {
    ["--socket", "/run/coffer/admin.sock"]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect()
}

/// A fleet release as an air-gapped branch gets it: a TUF repository made with
/// coffer-release's library, credit-lr 1.0.0 published on the broad ring, exported as a
/// bundle to `dir/bundle`. Returns the repository's root metadata (the site's trusted
/// root).
fn release_bundle(dir: &Path) -> PathBuf {
    use coffer_release::layout::Ring;
    use coffer_release::publish::{self, Expiries};
    use coffer_release::{bundle, init, repo::Repo};
    let repo = Repo::new(dir.join("repo"));
    let keys = dir.join("keys");
    let fixture = workspace_root().join("models/fixtures/credit-lr/1.0.0");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        init::init(&repo, &keys, 1, 1, &Expiries::default())
            .await
            .unwrap();
        repo.add(&fixture, Ring::Broad, &mut |_, _| {}).unwrap();
        publish::publish(&repo, &keys, &Expiries::default())
            .await
            .unwrap();
        bundle::export(&repo, &dir.join("bundle"), &mut |_, _| {})
            .await
            .unwrap();
    });
    repo.metadata().join("1.root.json")
}

/// Boots a container of this host (systemd as PID 1, an overlay over the installed
/// packages), starts cofferd.service as shipped, and runs under coffer-agent.service's
/// sandbox, as coffer-agent: the agent itself importing a signed release bundle (its TUF
/// checks, then import and activation through cofferd's admin socket), and cofferctl
/// listing models (allowed) and keys (refused by role); as nobody, cofferctl is refused
/// the socket. Skips (locally) where containers cannot boot; must run under CI.
fn sandboxed_start() {
    let missing = sandbox::can_boot_containers();
    if !requires(&missing.iter().map(|m| (*m, false)).collect::<Vec<_>>()) {
        return;
    }
    let fleet = out_dir("sandbox-fleet");
    let root = release_bundle(&fleet);
    // The shipped agent config with a site name and a short health gate (the shipped
    // 10 minutes would hold the import that long).
    let config = std::fs::read_to_string("/etc/coffer/agent.toml")
        .unwrap()
        .replace("site_id = \"\"", "site_id = \"sandbox\"")
        .replace("health_gate = \"10m\"", "health_gate = \"2s\"");
    assert!(config.contains("health_gate = \"2s\""), "{config}");
    std::fs::write(fleet.join("agent.toml"), config).unwrap();

    let mut nobody = agent_probe("nobody-keys", "/usr/bin/cofferctl", &[]);
    nobody.command.extend(cofferctl(&["keys", "list"]));
    nobody.user = "nobody".into();
    nobody.group = sh("id -gn nobody").trim().to_string();
    nobody.supplementary_groups = None;
    let mut list = agent_probe("agent-list", "/usr/bin/cofferctl", &[]);
    list.command.extend(cofferctl(&["models", "list"]));
    let mut keys = agent_probe("agent-keys", "/usr/bin/cofferctl", &[]);
    keys.command.extend(cofferctl(&["keys", "list"]));
    let probes = [
        agent_probe(
            "agent-bundle",
            "/usr/bin/coffer-agent",
            &[
                "--config",
                "/srv/coffer-sandbox/agent.toml",
                "import-bundle",
                "/srv/coffer-sandbox/bundle",
            ],
        ),
        list,
        keys,
        nobody,
    ];
    let booted = sandbox::boot_and_probe(
        "cofferd.service",
        "coffer-agent.service",
        &probes,
        &[
            (fleet.join("bundle"), "/srv/coffer-sandbox/bundle"),
            (fleet.join("agent.toml"), "/srv/coffer-sandbox/agent.toml"),
            (root, "/etc/coffer/fleet-root.json"),
        ],
        &target_dir().join("package-test/sandbox"),
        Duration::from_secs(240),
    )
    .unwrap_or_else(|e| panic!("the sandbox container did not boot: {e}"));
    report(&format!(
        "sandboxed cofferd.service: started {}, {}; probes: {:?}\n",
        booted.service_started,
        booted.service_state,
        booted
            .probes
            .iter()
            .map(|(n, o)| (n.as_str(), o.status))
            .collect::<Vec<_>>()
    ));
    assert!(
        booted.service_started && booted.service_state == "active",
        "cofferd.service starts under its unit and stays active ({}):\n{}",
        booted.service_state,
        booted.service_log
    );
    for name in ["agent-bundle", "agent-list"] {
        let outcome = booted.probe(name);
        assert!(
            outcome.succeeded(),
            "under coffer-agent.service's sandbox, {name} succeeds: {outcome:?}\ncofferd:\n{}",
            booted.service_log
        );
    }
    assert!(
        booted.probe("agent-list").stdout.contains("credit-lr"),
        "the agent's import is installed: {:?}",
        booted.probe("agent-list")
    );
    assert!(
        booted
            .service_log
            .contains("model version activated model=\"credit-lr\" version=\"1.0.0\""),
        "cofferd activated the agent's release:\n{}",
        booted.service_log
    );
    assert!(
        !booted.probe("agent-bundle").stderr.contains('\x1b'),
        "the agent's log carries no terminal escape codes off a terminal: {:?}",
        booted.probe("agent-bundle").stderr
    );
    let keys = booted.probe("agent-keys");
    assert!(
        keys.status.is_some_and(|s| s != 0) && keys.stderr.contains("agent role"),
        "the agent's sandbox is refused key management by role: {keys:?}"
    );
    let nobody = booted.probe("nobody-keys");
    assert!(
        nobody.status.is_some_and(|s| s != 0),
        "nobody is refused the admin socket: {nobody:?}"
    );
}

#[test]
fn deb_lints_installs_upgrades_removes_and_purges() {
    let root = is_root();
    if !requires(&[
        ("root", root),
        ("dpkg", have("dpkg")),
        ("lintian", have("lintian")),
        ("cargo-deb", have("cargo-deb")),
        ("systemd-analyze", have("systemd-analyze")),
        ("setpriv", have("setpriv")),
    ]) {
        return;
    }
    if Command::new("dpkg")
        .args(["-s", "cofferd"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        panic!("cofferd is already installed on this host; refusing to replace it in a test");
    }
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let staging = staging();
    let v1_dir = out_dir("deb-1");
    let v2_dir = out_dir("deb-2");
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for (package, _, _) in PACKAGES {
        v1.push(build_deb(package, None, staging, 1, &v1_dir).unwrap());
        v2.push(build_deb(package, None, staging, 2, &v2_dir).unwrap());
    }

    assert_lintian_clean(&v1);

    let _purge = Purge;
    let mut install = Command::new("dpkg");
    install.arg("-i").args(&v1);
    let out = run(&mut install).unwrap();
    assert!(
        out.contains("SELF-SIGNED"),
        "the install says loudly that it made a self-signed certificate:\n{out}"
    );

    // Users, directories, owners and modes.
    sh("getent passwd coffer && getent passwd coffer-agent");
    let groups = sh("id -nG coffer-agent");
    assert!(
        groups.split_whitespace().any(|g| g == "coffer"),
        "coffer-agent is in group coffer: {groups}"
    );
    assert_owner_mode("/var/lib/coffer", "coffer", "coffer", 0o750);
    assert_owner_mode(
        "/var/lib/coffer-agent",
        "coffer-agent",
        "coffer-agent",
        0o750,
    );
    assert_owner_mode("/etc/coffer/tls", "root", "coffer", 0o750);
    assert_owner_mode("/etc/coffer/tls/server-key.pem", "coffer", "coffer", 0o600);
    assert_owner_mode("/usr/bin/cofferd", "root", "root", 0o755);
    assert_owner_mode(
        "/usr/lib/systemd/system/cofferd.service",
        "root",
        "root",
        0o644,
    );
    let conffiles = sh("dpkg-query -W -f='${Conffiles}' cofferd coffer-agent");
    for conffile in ["/etc/coffer/cofferd.toml", "/etc/coffer/agent.toml"] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} is a conffile: {conffiles}"
        );
    }

    // The shipped configuration checks, and the units verify against the installed files.
    let check = sh("cofferd check-config --config /etc/coffer/cofferd.toml");
    assert!(check.contains("configuration OK"), "{check}");
    let check = sh("coffer-agent --config /etc/coffer/agent.toml check-config");
    assert!(check.contains("configuration OK"), "{check}");
    let verify = sh(
        "systemd-analyze verify /usr/lib/systemd/system/cofferd.service /usr/lib/systemd/system/coffer-agent.service 2>&1",
    );
    assert!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");

    // The installed units under their own sandbox (systemd as PID 1 in a container of
    // this host): cofferd starts, the agent's sandbox reaches its admin socket.
    sandboxed_start();

    // First start: loopback only, the self-signed certificate named in the log.
    let log = first_start();
    assert!(log.contains("SELF-SIGNED CERTIFICATE"), "{log}");
    assert!(
        std::path::Path::new("/var/lib/coffer/db").is_dir(),
        "state written"
    );

    // An admin edits the config; state accumulates; then the upgrade.
    let config = "/etc/coffer/cofferd.toml";
    let edited = std::fs::read_to_string(config)
        .unwrap()
        .replace("level = \"info\"", "level = \"debug\"");
    std::fs::write(config, &edited).unwrap();
    std::fs::write("/var/lib/coffer/kept-by-upgrade", b"state").unwrap();
    let key_before = std::fs::read("/etc/coffer/tls/server-key.pem").unwrap();
    let mut upgrade = Command::new("dpkg");
    upgrade.args(["-i", "--force-confold"]).args(&v2);
    run(&mut upgrade).unwrap();
    let version = sh("dpkg-query -W -f='${Version}' cofferd");
    assert_eq!(version.trim(), "0.1.0-2");
    assert_eq!(
        std::fs::read_to_string(config).unwrap(),
        edited,
        "upgrade keeps the edited config"
    );
    assert!(
        Path::new("/var/lib/coffer/kept-by-upgrade").exists(),
        "upgrade keeps state"
    );
    assert!(
        Path::new("/var/lib/coffer/db").is_dir(),
        "upgrade keeps the database"
    );
    assert_eq!(
        std::fs::read("/etc/coffer/tls/server-key.pem").unwrap(),
        key_before,
        "upgrade keeps the TLS key"
    );

    // Remove keeps state and config; purge deletes both.
    sh("dpkg -r coffer-agent cofferd");
    assert!(!Path::new("/usr/bin/cofferd").exists(), "binaries removed");
    assert!(
        Path::new("/var/lib/coffer/kept-by-upgrade").exists(),
        "remove keeps state"
    );
    assert!(Path::new(config).exists(), "remove keeps the config");
    sh("dpkg -P coffer-agent cofferd");
    for gone in ["/var/lib/coffer", "/var/lib/coffer-agent", "/etc/coffer"] {
        assert!(!Path::new(gone).exists(), "purge removes {gone}");
    }
}

#[test]
fn rpms_have_the_layout_config_flags_and_scripts_and_install_into_a_root() {
    if !requires(&[
        ("rpm", have("rpm")),
        ("cargo-generate-rpm", have("cargo-generate-rpm")),
    ]) {
        return;
    }
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let staging = staging();
    let out = out_dir("rpm");
    let expected: [(&str, &[&str], &str, &str); 2] = [
        (
            "daemon",
            &[
                "/etc/coffer/cofferd.toml",
                "/usr/bin/cofferctl",
                "/usr/bin/cofferd",
                "/usr/lib/coffer/setup-cofferd",
                "/usr/lib/systemd/system/cofferd.service",
                "/usr/lib/sysusers.d/cofferd.conf",
                "/usr/share/doc/cofferd/README.md",
            ],
            "/etc/coffer/cofferd.toml",
            "/usr/lib/coffer/setup-cofferd",
        ),
        (
            "agent",
            &[
                "/etc/coffer/agent.toml",
                "/usr/bin/coffer-agent",
                "/usr/lib/coffer/setup-coffer-agent",
                "/usr/lib/systemd/system/coffer-agent.service",
                "/usr/lib/sysusers.d/coffer-agent.conf",
            ],
            "/etc/coffer/agent.toml",
            "/usr/lib/coffer/setup-coffer-agent",
        ),
    ];
    let mut rpms = Vec::new();
    for (crate_dir, files, config, setup) in expected {
        let rpm = build_rpm(crate_dir, None, staging, &out).unwrap();
        let listed = sh(&format!("rpm -qpl {}", rpm.display()));
        let mut listed: Vec<&str> = listed.lines().filter(|l| l.starts_with('/')).collect();
        listed.sort_unstable();
        assert_eq!(listed, files, "{}: file list", rpm.display());
        let flags = sh(&format!(
            "rpm -qp --qf '[%{{FILENAMES}} %{{FILEFLAGS:fflags}} %{{FILEMODES:perms}}\\n]' {}",
            rpm.display()
        ));
        let config_line = flags.lines().find(|l| l.starts_with(config)).unwrap();
        assert!(
            config_line.contains(" cn "),
            "{config} is %config(noreplace): {config_line}"
        );
        let scripts = sh(&format!("rpm -qp --scripts {}", rpm.display()));
        for part in [
            "postinstall scriptlet",
            "preuninstall scriptlet",
            "postuninstall scriptlet",
            setup,
            "systemctl --quiet preset",
            "try-restart",
            "disable --now",
        ] {
            assert!(
                scripts.contains(part),
                "{}: scripts lack {part:?}:\n{scripts}",
                rpm.display()
            );
        }
        rpms.push(rpm);
    }

    // Into an empty rpm root: the files land with their modes and config marks. Its
    // scriptlets need a shell and the host's tools inside that root, so they are not run
    // here; the .deb test runs the same setup script for real.
    let root = out.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut install = Command::new("rpm");
    install
        .arg("--root")
        .arg(&root)
        .args(["-i", "--nodeps", "--noscripts", "--ignoreos"])
        .args(&rpms);
    run(&mut install).unwrap();
    let installed = root.join("usr/bin/cofferd");
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "{}", installed.display());
    assert_eq!(std::fs::metadata(&installed).unwrap().uid(), 0);
    let config = sh(&format!(
        "rpm --root {} -qc cofferd coffer-agent",
        root.display()
    ));
    assert_eq!(
        config.trim(),
        "/etc/coffer/cofferd.toml\n/etc/coffer/agent.toml"
    );
    assert!(
        !root.join("var/lib/coffer").exists(),
        "state is never shipped"
    );
}
