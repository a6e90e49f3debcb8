//! KFS over HTTP: the gateway (`kfs gateway`), the master's status page, and `/metrics` on
//! every server, checked with a real HTTP client (reqwest), raw requests on a socket where a
//! client would clean the URL up, and a Prometheus text parser.

use kfs_client::Client;
use kfs_gateway::http::{self as gateway, GatewayConfig, GatewayHandle};
use kfs_tests::{ClusterOptions, TestCluster, content, wait_until};
use reqwest::StatusCode;
use reqwest::header;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(30);

async fn put(client: &Client, path: &str, data: &[u8]) {
    let mut f = client.create(path).await.unwrap();
    use tokio::io::AsyncWriteExt as _;
    f.write_all(data).await.unwrap();
    f.close().await.unwrap();
}

async fn gateway_with(client: Client, config: GatewayConfig) -> GatewayHandle {
    gateway::start(
        client,
        GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..config
        },
    )
    .await
    .expect("the gateway starts")
}

/// A fresh connection per request: a server that answers a refused upload (401, 413) before
/// reading its body closes that connection, and a pooled one reused after it fails with a
/// broken pipe that says nothing about the server (seen in CI under load).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(BOUND)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Sends `target` as it is (no URL clean-up, as an attacker would) and returns the status.
async fn raw_status(addr: SocketAddr, target: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: kfs\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut reply))
        .await
        .expect("a reply in time")
        .unwrap();
    let text = String::from_utf8_lossy(&reply);
    let status = text.split(' ').nth(1).unwrap_or("");
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status in {text:?}"))
}

/// `GET url`, its body as text.
async fn get_text(h: &reqwest::Client, url: String) -> String {
    h.get(url).send().await.unwrap().text().await.unwrap()
}

/// `GET url`, its body as JSON.
async fn get_json(h: &reqwest::Client, url: String) -> serde_json::Value {
    h.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_served_with_ranges_validators_and_conditional_requests() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.client().await;
    client.mkdir_all("/pub/photos").await.unwrap();
    let small = content(1, 6 * 1024);
    // Several chunks (256 KiB each) and several streamed pieces.
    let large = content(2, 2 * 1024 * 1024 + 12345);
    put(&client, "/pub/photos/cat.jpg", &small).await;
    put(&client, "/pub/big.bin", &large).await;
    put(&client, "/pub/notes.txt", b"hello\n").await;
    put(&client, "/secret.txt", b"outside the root\n").await;
    let gw = gateway_with(
        client.clone(),
        GatewayConfig {
            root: "/pub".into(),
            ..Default::default()
        },
    )
    .await;
    let base = format!("http://{}", gw.local_addr());
    let h = http();

    // Whole files, with their type and validators.
    let r = h
        .get(format!("{base}/photos/cat.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(r.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
    let modified = r.headers()[header::LAST_MODIFIED]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(r.bytes().await.unwrap(), small);
    let r = h.get(format!("{base}/big.bin")).send().await.unwrap();
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(
        r.headers()[header::CONTENT_LENGTH],
        large.len().to_string().as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), large);
    let r = h.get(format!("{base}/notes.txt")).send().await.unwrap();
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
    assert_eq!(r.text().await.unwrap(), "hello\n");

    // HEAD: the same headers, no body.
    let r = h.head(format!("{base}/big.bin")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::CONTENT_LENGTH],
        large.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());

    // Ranges: one range is 206 with Content-Range; across chunk and piece boundaries too.
    let ranged = |range: &str| {
        h.get(format!("{base}/big.bin"))
            .header(header::RANGE, range)
            .send()
    };
    let len = large.len();
    for (range, from, to) in [
        ("bytes=10-19".to_string(), 10, 20),
        ("bytes=-5".to_string(), len - 5, len),
        (format!("bytes={}-", len - 100), len - 100, len),
        ("bytes=262100-786500".to_string(), 262_100, 786_501),
        (format!("bytes=0-{}", len + 1000), 0, len),
    ] {
        let r = ranged(&range).await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            format!("bytes {}-{}/{len}", from, to - 1).as_str(),
            "{range}"
        );
        assert_eq!(r.bytes().await.unwrap(), &large[from..to], "{range}");
    }
    let r = ranged(&format!("bytes={}-", len + 1)).await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()[header::CONTENT_RANGE],
        format!("bytes */{len}").as_str()
    );
    // Several ranges are not served as multipart: the whole file instead, as RFC 9110 allows.
    let r = ranged("bytes=0-1,10-11").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), len);
    // A malformed Range is ignored.
    let r = ranged("pages=1-2").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Conditional requests: (request headers, status expected).
    let cat = format!("{base}/photos/cat.jpg");
    let cases: [(&[(header::HeaderName, &str)], StatusCode); 6] = [
        (&[(header::IF_NONE_MATCH, &etag)], StatusCode::NOT_MODIFIED),
        (
            &[(header::IF_NONE_MATCH, "\"something-else\"")],
            StatusCode::OK,
        ),
        (
            &[(header::IF_MODIFIED_SINCE, &modified)],
            StatusCode::NOT_MODIFIED,
        ),
        (
            &[(header::IF_MODIFIED_SINCE, "Mon, 01 Jan 2001 00:00:00 GMT")],
            StatusCode::OK,
        ),
        // If-Range with a stale validator: the whole (changed) file, not a piece of it.
        (
            &[
                (header::RANGE, "bytes=0-9"),
                (header::IF_RANGE, "\"an-old-version\""),
            ],
            StatusCode::OK,
        ),
        (
            &[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, &etag)],
            StatusCode::PARTIAL_CONTENT,
        ),
    ];
    for (headers, status) in cases {
        let mut request = h.get(&cat);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status, "{headers:?}");
        if status == StatusCode::NOT_MODIFIED {
            assert_eq!(r.headers()[header::ETAG], etag.as_str());
            assert!(r.bytes().await.unwrap().is_empty());
        }
    }

    // Errors name what failed.
    let r = h.get(format!("{base}/nope.jpg")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("'/nope.jpg'"));
    let r = h.get(format!("{base}/notes.txt/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a path through a file");
    let r = h.post(format!("{base}/notes.txt")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = h.put(format!("{base}/x")).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "read-only by default");

    // Paths that try to leave the root, or cannot be names: 400, never the file outside.
    let addr = gw.local_addr();
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/photos/../../secret.txt",
        "/.%2e/secret.txt",
        "/a%2f..%2f..%2fsecret.txt",
        "/a%00b",
        "/%ff%fe",
    ] {
        assert_eq!(raw_status(addr, target).await, 400, "{target}");
    }
    let long = "n".repeat(256);
    assert_eq!(raw_status(addr, &format!("/{long}")).await, 400);
    assert_eq!(raw_status(addr, "/photos/cat.jpg").await, 200);

    // Directories: a JSON listing, paged.
    let page: serde_json::Value = get_json(&h, format!("{base}/?limit=2")).await;
    let names = |p: &serde_json::Value| -> Vec<String> {
        p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&page), ["big.bin", "notes.txt"]);
    assert_eq!(page["entries"][0]["size"], len as u64);
    assert_eq!(page["entries"][0]["type"], "file");
    let next = page["next"].as_str().unwrap();
    let page: serde_json::Value = get_json(&h, format!("{base}/?limit=2&after={next}")).await;
    assert_eq!(names(&page), ["photos"]);
    assert_eq!(page["entries"][0]["type"], "dir");
    assert!(page.get("next").is_none(), "the last page: {page}");

    gw.shutdown(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_and_uploads_are_whole_or_nothing() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.client().await;
    let gw = gateway_with(
        client.clone(),
        GatewayConfig {
            write_token: Some("s3cret".into()),
            max_body: 1 << 20,
            ..Default::default()
        },
    )
    .await;
    let base = format!("http://{}", gw.local_addr());
    let h = http();
    let url = format!("{base}/up/2026/photo.jpg");
    let first = content(3, 300_000);

    let r = h.put(&url).body(first.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    let r = h
        .put(&url)
        .bearer_auth("wrong")
        .body(first.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(matches!(
        client.stat("/up/2026/photo.jpg").await,
        Err(kfs_client::KfsError::NotFound { .. })
    ));

    // An upload creates the parents; read back through the gateway and the client.
    let r = h
        .put(&url)
        .bearer_auth("s3cret")
        .body(first.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        h.get(&url).send().await.unwrap().bytes().await.unwrap(),
        first
    );
    let f = client.open("/up/2026/photo.jpg").await.unwrap();
    assert_eq!(f.read_at(0, first.len() + 1).await.unwrap(), first);

    // Replacing: 204, and the new bytes at once (the gateway drops its cached entry).
    let second = content(4, 1000);
    let r = h
        .put(&url)
        .bearer_auth("s3cret")
        .body(second.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&url).send().await.unwrap().bytes().await.unwrap(),
        second
    );

    // Too large, by Content-Length or by what arrives: 413, and nothing changed or left over.
    let r = h
        .put(&url)
        .bearer_auth("s3cret")
        .body(content(5, (1 << 20) + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let chunks =
        futures::stream::iter((0..20).map(|i| Ok::<_, std::io::Error>(content(i, 100_000))));
    let streamed = h
        .put(&url)
        .bearer_auth("s3cret")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    // The gateway answers 413 as soon as the limit is passed and closes the connection; a client
    // still sending its body may see the close (a broken pipe) before it reads the answer.
    match streamed {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            format!("{e:?}").contains("BrokenPipe") || format!("{e:?}").contains("ConnectionReset"),
            "{e:?}"
        ),
    }
    assert_eq!(
        h.get(&url).send().await.unwrap().bytes().await.unwrap(),
        second
    );
    let names: Vec<String> = client
        .list_all("/up/2026")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["photo.jpg"], "no upload left behind");

    // A directory cannot be overwritten; a non-empty one cannot be deleted.
    let r = h
        .put(format!("{base}/up/2026"))
        .bearer_auth("s3cret")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = h
        .delete(format!("{base}/up/2026"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = h.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = h.delete(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let r = h.delete(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = h
        .delete(format!("{base}/up/2026"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "an empty directory goes"
    );

    gw.shutdown(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_get_503_and_a_change_shows_once_the_cache_expires() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.client().await;
    // Larger than the socket buffers of both ends can take (up to 32 MiB of receive buffer on
    // loopback here), so the unread response cannot finish and free its stream.
    let large = content(6, 64 << 20);
    put(&client, "/big.bin", &large).await;
    put(&client, "/small.txt", b"one").await;
    let gw = gateway_with(
        client.clone(),
        GatewayConfig {
            max_streams: 1,
            queue_timeout: Duration::from_millis(300),
            cache_ttl: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let base = format!("http://{}", gw.local_addr());
    let h = http();

    // A response whose body is not read holds the one stream; the next request waits in the
    // queue for it (300 ms here), then gets 503.
    let held = h.get(format!("{base}/big.bin")).send().await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let r = h.get(format!("{base}/small.txt")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("no stream became free within 300 ms")
    );
    assert_eq!(held.bytes().await.unwrap(), large);
    wait_until("the stream released", BOUND, || async {
        h.get(format!("{base}/small.txt"))
            .send()
            .await
            .map(|r| r.status() == StatusCode::OK)
            .unwrap_or(false)
    })
    .await;

    // An overwrite in place (same length) changes the validators, so no client keeps the old
    // bytes on a 304.
    let etag_of = |r: &reqwest::Response| r.headers()[header::ETAG].to_str().unwrap().to_string();
    let before = etag_of(&h.get(format!("{base}/small.txt")).send().await.unwrap());
    let f = client.open("/small.txt").await.unwrap();
    f.write_at(0, b"ONE").await.unwrap();
    f.close().await.unwrap();
    wait_until("the overwrite seen, with a new ETag", BOUND, || async {
        let r = h.get(format!("{base}/small.txt")).send().await.unwrap();
        let etag = etag_of(&r);
        etag != before && r.bytes().await.unwrap() == b"ONE".as_slice()
    })
    .await;
    let r = h
        .get(format!("{base}/small.txt"))
        .header(header::IF_NONE_MATCH, &before)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A change made through another client shows once the cache's 300 ms have passed.
    put(&client, "/small.txt", b"two, longer").await;
    wait_until("the new content served", BOUND, || async {
        h.get(format!("{base}/small.txt"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            == b"two, longer".as_slice()
    })
    .await;

    // The cache answered some lookups, and the gateway counted what it did.
    let metrics = get_text(&h, format!("http://{}/metrics", gw.metrics_addr().unwrap())).await;
    let scrape = parse(&metrics);
    assert!(value(&scrape, "kfs_gateway_cache_hits_total", &[]) >= 1.0);
    assert!(value(&scrape, "kfs_gateway_cache_misses_total", &[]) >= 1.0);
    // At least the one above (the wait for the stream's release may have met more).
    assert!(
        value(
            &scrape,
            "kfs_gateway_requests_total",
            &[("method", "GET"), ("status", "503")]
        ) >= 1.0
    );
    assert!(value(&scrape, "kfs_gateway_sent_bytes_total", &[]) >= large.len() as f64);
    assert_eq!(value(&scrape, "kfs_gateway_open_streams", &[]), 0.0);
    // Methods are labelled from a fixed set, whatever a client sends.
    let odd = reqwest::Method::from_bytes(b"BREW").unwrap();
    let r = h
        .request(odd, format!("{base}/small.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let text = get_text(&h, format!("http://{}/metrics", gw.metrics_addr().unwrap())).await;
    assert!(!text.contains("BREW"), "{text}");
    assert_eq!(
        value(
            &parse(&text),
            "kfs_gateway_requests_total",
            &[("method", "other"), ("status", "405")]
        ),
        1.0
    );

    gw.shutdown(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the Prometheus text format")
}

/// The value of the sample `name` whose labels include `labels` (summed over the others).
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let total = value_if(scrape, name, labels);
    assert!(total.is_some(), "no sample {name} {labels:?}");
    total.unwrap_or_default()
}

/// [`value`], `None` when there is no such sample.
fn value_if(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = false;
    let mut total = 0.0;
    for s in &scrape.samples {
        if s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)) {
            found = true;
            total += match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            };
        }
    }
    found.then_some(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_and_chunkservers_report_status_and_metrics() {
    let cluster = TestCluster::start(ClusterOptions {
        http: true,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await;
    client.mkdir_all("/m").await.unwrap();
    for i in 0..5 {
        put(&client, &format!("/m/f{i}"), &content(i, 100_000)).await;
    }
    assert!(client.stat("/m/nope").await.is_err());
    let h = http();
    let master = format!("http://{}", cluster.master().http_addr().unwrap());

    // The status as JSON; every chunkserver alive once heartbeats have told their space.
    let status: serde_json::Value = get_json(&h, format!("{master}/status.json")).await;
    assert_eq!(status["summary"]["files"], 5);
    assert_eq!(status["summary"]["dirs"], 2);
    assert_eq!(status["summary"]["servers_alive"], 3);
    let servers = status["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert!(servers.iter().all(|s| s["state"] == "alive"), "{status}");
    assert_eq!(status["workers"]["committer"]["log"], "ok");
    // The HTML page: self-contained (no scripts, nothing fetched from elsewhere).
    let page = h.get(&master).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert_eq!(page.matches("class=\"server alive\"").count(), 3, "{page}");
    assert!(
        !page.contains("<script") && !page.contains("src=\"http"),
        "{page}"
    );

    // The master's metrics.
    let scrape = parse(
        &h.get(format!("{master}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(value(&scrape, "kfs_files", &[]), 5.0);
    assert!(
        value(
            &scrape,
            "kfs_rpc_calls_total",
            &[("service", "MasterService"), ("method", "create")]
        ) >= 5.0
    );
    assert!(
        value(
            &scrape,
            "kfs_rpc_errors_total",
            &[("method", "stat"), ("kind", "not_found")]
        ) >= 1.0
    );
    assert!(
        value(
            &scrape,
            "kfs_rpc_latency_seconds_count",
            &[("method", "create")]
        ) >= 5.0
    );
    assert!(value(&scrape, "kfs_log_commit_seconds_count", &[]) >= 1.0);
    assert!(value(&scrape, "kfs_log_batch_ops_sum", &[]) >= 6.0);
    assert_eq!(
        value(&scrape, "kfs_chunkservers", &[("state", "alive")]),
        3.0
    );
    wait_until("a repair round counted", BOUND, || async {
        let s: serde_json::Value = get_json(&h, format!("{master}/status.json")).await;
        s["replication"]["under_replicated"] == 0 && s["replication"]["missing"] == 0
    })
    .await;

    // Each chunkserver's: every one holds a replica of every chunk (replication 3 of 3).
    for i in 0..3 {
        let addr = cluster.chunkserver(i).http_addr().unwrap();
        let scrape = parse(
            &h.get(format!("http://{addr}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        assert!(value(&scrape, "kfs_chunkserver_written_bytes_total", &[]) >= 500_000.0);
        // (The files are small: they share one volume, written by appends.)
        assert!(value(&scrape, "kfs_chunkserver_replicas", &[]) >= 1.0);
        // A volume's primary takes writers' appends (under capabilities), the others the
        // chain's.
        let appends: f64 = ["append", "append_with"]
            .iter()
            .filter_map(|method| {
                value_if(
                    &scrape,
                    "kfs_rpc_calls_total",
                    &[("service", "ChunkService"), ("method", method)],
                )
            })
            .sum();
        assert!(appends >= 1.0, "appends on a chunkserver: {appends}");
        assert!(value(&scrape, "kfs_chunkserver_data_syncs_total", &[]) >= 1.0);
    }

    // The background workers: a chunkserver's on /workers.json, the master's in its status.
    let addr = cluster.chunkserver(0).http_addr().unwrap();
    let workers: serde_json::Value = get_json(&h, format!("http://{addr}/workers.json")).await;
    let names: Vec<&str> = workers
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["master link", "scrubber", "sequence sweep"]);
    assert!(workers[0]["rounds"].as_u64().unwrap() >= 1, "{workers}");
    assert_eq!(workers[0]["state"], "Running");
    let s: serde_json::Value = get_json(&h, format!("{master}/status.json")).await;
    let loops: Vec<&str> = s["workers"]["loops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        loops,
        [
            "checkpointer",
            "heartbeat timeouts",
            "volume reclaimer",
            "volume compactor",
            "status history",
            "abandoned files",
            "healer"
        ]
    );
    cluster.shutdown().await;
}

/// The master's calls by method, from its `/metrics`.
async fn master_calls(
    h: &reqwest::Client,
    master: &str,
) -> std::collections::BTreeMap<String, f64> {
    let text = get_text(h, format!("{master}/metrics")).await;
    let mut calls = std::collections::BTreeMap::new();
    for s in parse(&text).samples {
        if s.metric == "kfs_rpc_calls_total"
            && s.labels.get("service") == Some("MasterService")
            && let prometheus_parse::Value::Counter(v) = s.value
        {
            *calls
                .entry(s.labels.get("method").unwrap_or("?").to_string())
                .or_default() += v;
        }
    }
    calls
}

/// Issue 17, item 4: a small file costs `create` and `set_extent` at the master, and the first
/// one a client writes also `volume_lease` (the lease is kept for the files after it); `close`
/// answers with `set_extent`'s reply instead of a `stat_fid` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_costs_two_master_calls() {
    let cluster = TestCluster::start(ClusterOptions {
        http: true,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await;
    let h = http();
    let master = format!("http://{}", cluster.master().http_addr().unwrap());
    client.mkdir_all("/small").await.unwrap();
    let data = content(9, 6 * 1024);
    let mut spent = Vec::new();
    for name in ["a.jpg", "b.jpg"] {
        let before = master_calls(&h, &master).await;
        let mut f = client.create(&format!("/small/{name}")).await.unwrap();
        f.write_all(&data).await.unwrap();
        let attr = f.close().await.unwrap();
        assert_eq!(
            attr.size,
            data.len() as u64,
            "close answers the new attributes"
        );
        let after = master_calls(&h, &master).await;
        let calls: std::collections::BTreeMap<String, f64> = after
            .iter()
            .map(|(m, n)| (m.clone(), n - before.get(m).copied().unwrap_or(0.0)))
            .filter(|(_, n)| *n > 0.0)
            .collect();
        spent.push(calls);
    }
    let names = |c: &std::collections::BTreeMap<String, f64>| {
        c.iter()
            .map(|(m, n)| (m.clone(), *n))
            .collect::<Vec<(String, f64)>>()
    };
    assert_eq!(
        names(&spent[0]),
        [
            ("create", 1.0),
            ("set_extent", 1.0),
            ("volume_lease_signed", 1.0)
        ]
        .map(|(m, n)| (m.to_string(), n))
        .to_vec(),
        "the master calls the first small file costs"
    );
    assert_eq!(
        names(&spent[1]),
        [("create", 1.0), ("set_extent", 1.0)]
            .map(|(m, n)| (m.to_string(), n))
            .to_vec(),
        "the master calls every small file after it costs"
    );
    assert_eq!(client.stat("/small/a.jpg").await.unwrap().size, 6 * 1024);
    cluster.shutdown().await;
}

/// Issue 18, item 11: requests past the stream limit wait in the queue rather than fail, and a
/// client that stops reading its response is cut off, so the queue moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_wait_and_a_stalled_reader_is_cut_off() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.client().await;
    // Larger than the socket buffers between the two ends: its sender stalls.
    let large = content(7, 64 << 20);
    put(&client, "/huge.bin", &large).await;
    put(&client, "/small.txt", b"served after the wait").await;
    let gw = gateway_with(
        client.clone(),
        GatewayConfig {
            max_streams: 1,
            queue_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    let base = format!("http://{}", gw.local_addr());
    let h = http();
    // Twenty requests for a small file, all at once with the one stream free: all served.
    let answers =
        futures::future::join_all((0..20).map(|_| h.get(format!("{base}/small.txt")).send())).await;
    for a in answers {
        assert_eq!(a.unwrap().status(), StatusCode::OK);
    }
    // A reader that takes the headers and then nothing holds the one stream until it is cut
    // off; the request behind it waits, and is served.
    let stalled = h.get(format!("{base}/huge.bin")).send().await.unwrap();
    assert_eq!(stalled.status(), StatusCode::OK);
    let waited = tokio::time::timeout(BOUND, h.get(format!("{base}/small.txt")).send())
        .await
        .expect("served within the bound")
        .unwrap();
    assert_eq!(waited.status(), StatusCode::OK);
    assert_eq!(waited.text().await.unwrap(), "served after the wait");
    // The stalled reader's response was cut short.
    let got = stalled.bytes().await.map(|b| b.len()).unwrap_or(0);
    assert!(got < large.len(), "a stalled reader got the whole file");
    gw.shutdown(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}
