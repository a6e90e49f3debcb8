//! A real browser (Debian's headless Chromium, driven over WebDriver by chromedriver) opens the
//! master's status page of a 3-chunkserver cluster, and a page served by the gateway whose image
//! the gateway serves too. `.ci/run` installs chromium and chromium-driver when missing; without
//! them this test fails and says so.

use fantoccini::{ClientBuilder, Locator};
use kfs_gateway::http::{self as gateway, GatewayConfig};
use kfs_tests::{ClusterOptions, TestCluster, wait_until};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const BOUND: Duration = Duration::from_secs(60);

/// A `width` x `height` 24-bit BMP: a gradient, so the browser has something to decode.
fn bmp(width: u32, height: u32) -> Vec<u8> {
    let row = (width * 3).div_ceil(4) * 4;
    let pixels = row * height;
    let mut b = Vec::with_capacity(54 + pixels as usize);
    b.extend_from_slice(b"BM");
    for v in [54 + pixels, 0, 54, 40] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(width as i32).to_le_bytes());
    b.extend_from_slice(&(height as i32).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    for v in [0, pixels, 2835, 2835, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for y in 0..height {
        for x in 0..width {
            b.extend_from_slice(&[(x * 4) as u8, (y * 5) as u8, 200]);
        }
        b.resize(b.len() + (row - width * 3) as usize, 0);
    }
    b
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let mut child = Command::new("chromedriver")
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver (Debian: apt-get install chromium chromium-driver; .ci/run does it)",
            );
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(BOUND)
            .expect("chromedriver said which port it listens on");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sees_the_status_page_and_an_image_served_by_the_gateway() {
    let cluster = TestCluster::start(ClusterOptions {
        http: true,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await;
    client.mkdir_all("/site/img").await.unwrap();
    for (path, data) in [
        (
            "/site/index.html",
            br#"<!DOCTYPE html><html><body><h1>KFS</h1><img id="photo" src="img/photo.bmp"></body></html>"#
                .to_vec(),
        ),
        ("/site/img/photo.bmp", bmp(64, 48)),
    ] {
        let mut f = client.create(path).await.unwrap();
        f.write_all(&data).await.unwrap();
        f.close().await.unwrap();
    }
    let gw = gateway::start(
        client.clone(),
        GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            root: "/site".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                // Tall enough that the screenshot holds the whole page.
                "--window-size=1280,3200",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session");

    // The status page lists the three chunkservers alive.
    let status = format!("http://{}/", cluster.master().http_addr().unwrap());
    browser.goto(&status).await.unwrap();
    let rows = browser
        .find_all(Locator::Css("tr.server.alive"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let verdict = browser
        .find(Locator::Id("verdict"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        verdict.contains("healthy") || verdict.contains("repairing"),
        "{verdict}"
    );
    // Issue 18, item 9: use bars per server, the last hour's graphs (inline SVG, filling as
    // samples come), safe mode, open files and the checkpoint row, the servers' and gateways'
    // builds and data dirs; a screenshot of the whole page for the CI artifacts
    // (target/artifacts/status-page.png).
    let bars = browser
        .find_all(Locator::Css("tr.server .bar"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 3);
    let b = &browser;
    let s = &status;
    wait_until("the graphs drawn with points", BOUND, || async move {
        b.goto(s).await.unwrap();
        let points = b
            .execute(
                "return Array.from(document.querySelectorAll('#graphs svg polyline'))\
                 .map(p => p.getAttribute('points').trim().split(' ').filter(x => x).length);",
                vec![],
            )
            .await
            .unwrap();
        let counts: Vec<u64> = serde_json::from_value(points).unwrap_or_default();
        counts.len() == 5 && counts.iter().all(|n| *n >= 2)
    })
    .await;
    for (id, text) in [
        ("safe-mode", "off"),
        ("open-files", "being written"),
        ("checkpoints", "newest at record"),
    ] {
        let shown = browser
            .find(Locator::Id(id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(shown.contains(text), "#{id}: {shown}");
    }
    // Each chunkserver's build, data dir and /metrics link; the gateway that serves the site.
    let b = &browser;
    wait_until(
        "the servers and the gateway described",
        BOUND,
        || async move {
            b.goto(s).await.unwrap();
            let dirs = b
                .find_all(Locator::Css("tr.dir.in-service"))
                .await
                .unwrap()
                .len();
            let links = b
                .find_all(Locator::Css("tr.server a.metrics"))
                .await
                .unwrap()
                .len();
            let gateways = b
                .find_all(Locator::Css("tr.gateway.reporting"))
                .await
                .unwrap()
                .len();
            dirs == 3 && links == 3 && gateways == 1
        },
    )
    .await;
    let versions = browser
        .find_all(Locator::Css("tr.server td.version, tr.gateway td.version"))
        .await
        .unwrap();
    assert_eq!(versions.len(), 4);
    for v in versions {
        assert_eq!(v.text().await.unwrap(), env!("CARGO_PKG_VERSION"));
    }
    let png = browser.screenshot().await.unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("status-page.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");

    // A page from the gateway, and its image decoded.
    browser
        .goto(&format!("http://{}/index.html", gw.local_addr()))
        .await
        .unwrap();
    let b = &browser;
    wait_until("the image loaded", BOUND, || async move {
        let done = b
            .execute(
                "const i = document.getElementById('photo'); return i !== null && i.complete;",
                vec![],
            )
            .await
            .unwrap();
        done == serde_json::json!(true)
    })
    .await;
    let width = browser
        .execute(
            "return document.getElementById('photo').naturalWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        width,
        serde_json::json!(64),
        "the browser decoded the image"
    );

    browser.close().await.unwrap();
    drop(driver);
    gw.shutdown(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}
