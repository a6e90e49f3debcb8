//! Issue 18, item 10: the monitoring that ships in `deploy/monitoring/` works against a real
//! cluster. The Grafana dashboard is JSON Grafana can import (panels with Prometheus targets),
//! the alert rules pass `promtool check rules` (Debian's `prometheus` package; `test.sh`
//! installs it), and every metric either names is exposed by a scrape of a running master,
//! chunkserver or gateway.

use kfs_gateway::http::{self as gateway, GatewayConfig};
use kfs_tests::{ClusterOptions, TestCluster};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

/// The `kfs_...` metric names an expression uses (a histogram's `_bucket`, `_sum` and `_count`
/// series and a counter's `_total` are named as the scrape names them).
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("kfs_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expr[start..end].to_string());
        i = end;
    }
    names
}

/// Every series name in a Prometheus text scrape.
fn series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alert_rules_use_only_metrics_a_cluster_exposes() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("kfs-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut wanted = BTreeSet::new();
    for p in panels {
        let targets = p["targets"].as_array().expect("every panel has targets");
        assert!(!targets.is_empty(), "{p}");
        assert_eq!(p["datasource"]["type"], "prometheus", "{p}");
        for t in targets {
            wanted.extend(metrics_in(t["expr"].as_str().expect("a PromQL expression")));
        }
    }
    let rules = std::fs::read_to_string(monitoring().join("kfs-alerts.yml")).unwrap();
    let mut alerts = BTreeSet::new();
    for line in rules.lines() {
        let line = line.trim();
        if let Some(expr) = line.strip_prefix("expr:") {
            wanted.extend(metrics_in(expr));
        }
        if let Some(name) = line.strip_prefix("- alert:") {
            alerts.insert(name.trim().to_string());
        }
    }
    for needed in [
        "KfsMasterDown",
        "KfsChunkserverDead",
        "KfsMissingChunks",
        "KfsUnderReplicated",
        "KfsDiskFailed",
        "KfsLogCommitSlow",
        "KfsSafeModeStuck",
    ] {
        assert!(alerts.contains(needed), "no alert {needed}: {alerts:?}");
    }
    match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(monitoring().join("kfs-alerts.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not installed in CI: {e}"
            );
            eprintln!("promtool not found ({e}): the rules' syntax is not checked here");
        }
    }

    // What a running cluster exposes: the master, a chunkserver, and a gateway that served.
    let cluster = TestCluster::start(ClusterOptions {
        http: true,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await;
    let mut f = client.create("/hello").await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut f, b"hello")
        .await
        .unwrap();
    f.close().await.unwrap();
    let gw = gateway::start(
        client,
        GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got = reqwest::get(format!("http://{}/hello", gw.local_addr()))
        .await
        .unwrap();
    assert!(got.status().is_success());
    let mut exposed = series(&scrape(cluster.master().http_addr().unwrap()).await);
    exposed.extend(series(
        &scrape(cluster.chunkserver(0).http_addr().unwrap()).await,
    ));
    exposed.extend(series(&scrape(gw.metrics_addr().unwrap()).await));
    let missing: Vec<&String> = wanted.iter().filter(|m| !exposed.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or the rules but in no scrape: {missing:?}"
    );
    gw.shutdown(std::time::Duration::from_secs(1)).await;
    cluster.shutdown().await;
}

#[test]
fn metric_names_are_read_out_of_expressions() {
    let names = metrics_in(
        "histogram_quantile(0.99, sum(rate(kfs_log_commit_seconds_bucket[5m])) by (le)) > kfs_x",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["kfs_log_commit_seconds_bucket", "kfs_x"]
    );
}
