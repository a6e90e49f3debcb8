//! What the master's status page and `/status.json` say of the servers around it (issue 18,
//! item 9): each chunkserver's build, a working link to its `/metrics`, its data dirs (a failed
//! one shown failed) and its scrubber's progress; the gateways that serve the cluster, with their
//! builds; the chunk data moved, graphed from the chunkservers' own counters.

use kfs_gateway::http::{self as gateway, GatewayConfig};
use kfs_tests::{ClusterOptions, TestCluster, wait_until};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const BOUND: Duration = Duration::from_secs(30);

async fn status(h: &reqwest::Client, master: &str) -> serde_json::Value {
    h.get(format!("{master}/status.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_versions_data_dirs_scrubbing_gateways_and_data_moved() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 2,
        data_dirs_per_server: 2,
        http: true,
        scrub_bytes_per_sec: 1 << 30,
        scrub_pause_secs: 0,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await;
    let mut f = client.create("/data").await.unwrap();
    f.write_all(&vec![7u8; 3 << 20]).await.unwrap();
    f.close().await.unwrap();
    let gw = gateway::start(
        client.clone(),
        GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            root: "/".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let h = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    let master = format!("http://{}", cluster.master().http_addr().unwrap());

    // Every chunkserver described itself: its build, its /metrics, two dirs in service, and a
    // scrubber that has verified data. The gateway reported too. The data written shows in
    // the graph of data written (every replica counts).
    let (h_ref, m) = (&h, master.as_str());
    wait_until(
        "every server described, and the data graphed",
        BOUND,
        || async move {
            let s = status(h_ref, m).await;
            let servers = s["servers"].as_array().unwrap();
            let written: f64 = s["history"]["data_written_per_sec"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_f64())
                .sum();
            servers.len() == 2
                && servers.iter().all(|r| {
                    r["version"] == s["version"]
                        && r["dirs"].as_array().is_some_and(|d| d.len() == 2)
                        && r["scrub"]["bytes"].as_u64().unwrap_or(0) > 0
                })
                && s["gateways"].as_array().is_some_and(|g| g.len() == 1)
                && written > 0.0
        },
    )
    .await;
    let s = status(&h, &master).await;
    for (i, row) in s["servers"].as_array().unwrap().iter().enumerate() {
        let id = row["id"].as_str().unwrap();
        let which = (0..2)
            .find(|&k| cluster.chunkserver(k).store().server_id().to_string() == id)
            .unwrap_or_else(|| panic!("row {i} names a server of the cluster: {row}"));
        let http = cluster.chunkserver(which).http_addr().unwrap();
        assert_eq!(row["http"], http.to_string(), "{row}");
        let dirs: Vec<String> = cluster
            .data_dirs(which)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let shown: Vec<&str> = row["dirs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert_eq!(shown, dirs, "{row}");
        assert!(row["scrub"]["enabled"].as_bool().unwrap(), "{row}");
        assert!(row["scrub"]["bytes"].as_u64().unwrap() > 0, "{row}");
    }
    let gateways = s["gateways"].as_array().unwrap();
    assert_eq!(gateways[0]["listen"], gw.local_addr().to_string());
    assert_eq!(
        gateways[0]["metrics"],
        gw.metrics_addr().unwrap().to_string()
    );
    assert_eq!(gateways[0]["version"], s["version"]);
    assert_eq!(gateways[0]["kind"], "http");
    assert_eq!(gateways[0]["silent"], false);

    // The page links each chunkserver's /metrics, and the links work.
    let page = h.get(&master).send().await.unwrap().text().await.unwrap();
    for k in 0..2 {
        let http = cluster.chunkserver(k).http_addr().unwrap();
        let link = format!("http://{http}/metrics");
        assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
        let scrape = h.get(&link).send().await.unwrap().text().await.unwrap();
        assert!(scrape.contains("kfs_chunkserver_read_bytes"), "{scrape}");
    }
    assert!(page.contains("class=\"gateway reporting\""), "{page}");
    assert_eq!(
        page.matches("class=\"dir in-service\"").count(),
        4,
        "{page}"
    );

    // A disk fails: the master's views say which dir, on which server.
    let chunk = client.file_chunks("/data").await.unwrap()[0].chunk;
    let version = cluster
        .chunkserver(0)
        .store()
        .replica(chunk)
        .map(|(v, _)| v)
        .expect("server 0 holds a replica (replication 2 of 2)");
    cluster.servers[0]
        .io
        .set(|f| f.fail_everything = Some(std::io::ErrorKind::Other));
    let _ = cluster
        .chunkserver(0)
        .store()
        .read(chunk, version, 0, 10)
        .await;
    cluster.servers[0].io.set(|f| f.fail_everything = None);
    // The read fails the dir it touched; a scrub read in that window may fail the other too.
    let failed: Vec<String> = cluster
        .chunkserver(0)
        .store()
        .failed_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    assert!(!failed.is_empty());
    let (h_ref, m, failed_ref) = (&h, master.as_str(), &failed);
    wait_until("the failed dirs shown failed", BOUND, || async move {
        let s = status(h_ref, m).await;
        let shown = s["servers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["dirs"].as_array().unwrap().iter())
            .filter(|d| d["failed"] == true && d["capacity"] == 0)
            .filter(|d| failed_ref.iter().any(|f| d["path"] == f.as_str()))
            .count();
        shown == failed_ref.len()
    })
    .await;
    let page = h.get(&master).send().await.unwrap().text().await.unwrap();
    let n = failed.len();
    assert_eq!(page.matches("class=\"dir failed\"").count(), n, "{page}");
    assert!(page.contains(&format!("{n} of 2 failed")), "{page}");

    gw.shutdown(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}
