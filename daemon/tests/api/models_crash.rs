//! Crash safety of the model lifecycle: cofferd is killed with SIGKILL at random
//! moments during imports, activations and rollbacks, 32 times, restarted each time,
//! and the registry, the store and what is served are checked against each other.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_admin_api::models::ActivateOptions;
use coffer_admin_api::{AdminClient, ClientError};
use rand::{Rng as _, SeedableRng as _};

use crate::common::{Daemon, Setup, fixture};
use crate::models::{derived_version, score};

/// The status an admin call was answered with (200 or 201 for success).
fn status<T>(result: Result<T, ClientError>, ok: u16) -> Result<u16, String> {
    match result {
        Ok(_) => Ok(ok),
        Err(ClientError::Refused { status, .. }) => Ok(status.as_u16()),
        Err(e) => Err(e.to_string()),
    }
}

/// Every invariant the lifecycle promises after a start.
async fn check_invariants(
    s: &Setup,
    d: &Daemon,
    key: &str,
    round: usize,
) -> BTreeMap<String, String> {
    let socket = s.socket();
    let client = AdminClient::new(&socket);
    let list = serde_json::to_value(client.models().await.unwrap()).unwrap();
    let store = s.dir().join("state/models");
    assert_eq!(
        std::fs::read_dir(store.join("staging")).unwrap().count(),
        0,
        "round {round}: staging is cleaned at start"
    );
    let on_disk: Vec<String> = std::fs::read_dir(store.join("versions/credit-lr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let model = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "credit-lr")
        .unwrap();
    let mut states = BTreeMap::new();
    let mut actives = 0;
    for v in model["versions"].as_array().unwrap() {
        let version = v["version"].as_str().unwrap().to_string();
        let state = v["state"].as_str().unwrap().to_string();
        assert_ne!(
            state, "evaluating",
            "round {round}: {version} left evaluating"
        );
        if state != "failed" {
            assert!(
                on_disk.contains(&version),
                "round {round}: {version} is registered ({state}) but has no files"
            );
        }
        if state == "active" {
            actives += 1;
            assert_eq!(model["active"], version.as_str(), "round {round}: pointer");
        }
        states.insert(version, state);
    }
    for version in &on_disk {
        assert!(
            states.contains_key(version),
            "round {round}: {version} is in the store but not registered"
        );
        let verified = client.verify("credit-lr", version).await;
        assert!(
            verified.is_ok(),
            "round {round}: {version} verifies: {verified:?}"
        );
    }
    assert_eq!(
        actives, 1,
        "round {round}: exactly one active version: {states:?}"
    );
    let (served, _) = score(&s.client(d.addr), key, "credit-lr").await;
    assert_eq!(
        model["active"],
        served.as_str(),
        "round {round}: the active version serves"
    );
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_import_and_activation_never_leaves_a_half_version() {
    let mut s = Setup::new();
    s.scoring_models = vec![fixture("credit-lr")];
    let config = s.write_config();
    let releases = s.dir().join("releases");
    let rounds = 32;
    // Alternate students and scorecards so that versions differ in content.
    let dirs: Vec<_> = (0..rounds)
        .map(|i| {
            let from = if i % 2 == 0 {
                "credit-mlp"
            } else {
                "credit-lr"
            };
            derived_version(&releases, from, "credit-lr", &format!("2.0.{i}"))
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut key = String::new();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for (round, dir) in dirs.iter().enumerate() {
        let d = Daemon::start(config.clone(), s.dir()).await;
        if key.is_empty() {
            key = s.create_key("scorer", "score", None);
        }
        let states = check_invariants(&s, &d, &key, round).await;
        let socket = s.socket();
        let ready: Vec<String> = states
            .iter()
            .filter(|(_, st)| *st == "ready" || *st == "retired")
            .map(|(v, _)| v.clone())
            .collect();
        let retired = states.values().any(|st| st == "retired");
        let op = match rng.gen_range(0..3) {
            2 if !retired => 1,
            op => op,
        };
        let dir = dir.clone();
        let target = if ready.is_empty() {
            None
        } else {
            Some(ready[rng.gen_range(0..ready.len())].clone())
        };
        let task = tokio::spawn(async move {
            let client = AdminClient::new(&socket);
            match (op, target) {
                (1, Some(v)) => status(
                    client
                        .activate("credit-lr", &v, ActivateOptions::default())
                        .await,
                    200,
                ),
                (2, Some(_)) => status(client.rollback("credit-lr").await, 200),
                _ => status(client.import(&dir, false, None).await, 201),
            }
        });
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..25_000))).await;
        let mut d = d;
        d.signal(rustix::process::Signal::KILL);
        d.wait_exit(Duration::from_secs(10));
        let result = task.await.unwrap();
        eprintln!("round {round}: op {op}: {result:?}");
        let outcome = match result {
            Ok(200 | 201) => "finished before the kill",
            Ok(_) => "refused",
            Err(_) => "cut by the kill",
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    let d = Daemon::start(config, s.dir()).await;
    let states = check_invariants(&s, &d, &key, rounds).await;
    eprintln!("kill -9 rounds: {outcomes:?}; final states: {states:?}");
    assert!(
        outcomes.get("cut by the kill").copied().unwrap_or(0) >= 3,
        "some kills must land inside an operation: {outcomes:?}"
    );
}
