//! Adversarial peers (issue 15, "nothing lost, nothing hangs"): frames too large, budgets of
//! buffered bytes, deadlines no clock can hold, idle connections, the connection limit, and
//! HTTP clients that never finish their headers. Raw sockets speak the wire format by hand
//! (`kfs_common::rpc`: a service tag byte, then big-endian u32 length + bincode frames).

use kfs_common::KfsError;
use kfs_common::metrics::{HttpLimits, HttpServer, Registry, metrics_router};
use kfs_common::proto::CLIENT_PROTOCOL_VERSION;
use kfs_common::proto::master::{MasterServiceRequest, MasterServiceResponse};
use kfs_common::rpc::Conn;
use kfs_common::rpc::{Limits, Service};
use kfs_common::security::Role;
use kfs_tests::{ClusterOptions, TestCluster, content, wait_until};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound for every wait below: generous against a loaded machine, short against a hang.
const BOUND: Duration = Duration::from_secs(10);

fn options(limits: Limits, chunkservers: usize) -> ClusterOptions {
    ClusterOptions {
        chunkservers,
        rpc_limits: limits,
        ..ClusterOptions::default()
    }
}

/// A raw connection to `service` (inside TLS, as this cluster's admin, or as a chunkserver to
/// the cluster service), its protocol version stated and accepted.
async fn dial(cluster: &TestCluster, addr: SocketAddr, service: Service) -> Conn {
    let mut stream = dial_raw(cluster, addr, service).await;
    let accepted = tokio::time::timeout(BOUND, stream.read_u32())
        .await
        .expect("the preamble answered within the bound")
        .expect("the preamble accepted");
    assert_eq!(accepted, service.protocol().1);
    stream
}

/// A raw connection to `service`, its protocol version stated, the answer still to read.
async fn dial_raw(cluster: &TestCluster, addr: SocketAddr, service: Service) -> Conn {
    let security = match service {
        Service::Cluster => cluster.peer_security(Role::Chunkserver, "t65"),
        _ => cluster.security().clone(),
    };
    let mut stream = kfs_common::rpc::open(addr, service, &security)
        .await
        .unwrap();
    let preamble = kfs_common::rpc::preamble::bytes(service, service.protocol().1);
    stream.write_all(&preamble).await.unwrap();
    stream
}

/// Reads until the peer closes (or `BOUND` passes: a failure); returns what it sent.
async fn read_to_close(stream: &mut (impl tokio::io::AsyncRead + Unpin), what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    match tokio::time::timeout(BOUND, stream.read_to_end(&mut got)).await {
        Ok(_) => got, // EOF, or a reset after the notice
        Err(_) => panic!("{what}: the server kept the connection open for {BOUND:?}"),
    }
}

fn bincode_of(value: &impl serde::Serialize) -> Vec<u8> {
    use bincode::Options;
    bincode::DefaultOptions::new().serialize(value).unwrap()
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_of_u64_max_seconds_is_clamped_not_a_panic() {
    // Before: tarpc's deserializer computed `Instant::now() + u64::MAX s` and the connection's
    // task panicked ("overflow when adding duration to instant"); the request went unanswered.
    static OVERFLOW_PANICS: AtomicU64 = AtomicU64::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains("overflow") {
            OVERFLOW_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    let cluster = TestCluster::start(options(Limits::default(), 1)).await;

    // tarpc's `ClientMessage::Request(Request { context: { deadline, trace }, id, message })`,
    // spelled out so that the deadline can be any duration at all.
    #[derive(serde::Serialize)]
    enum Message {
        Request(Request),
    }
    #[derive(serde::Serialize)]
    struct Request {
        context: (Duration, tarpc::trace::Context),
        id: u64,
        message: MasterServiceRequest,
    }
    let request = Message::Request(Request {
        context: (
            Duration::new(u64::MAX, 999_999_999),
            tarpc::context::current().trace_context,
        ),
        id: 42,
        message: MasterServiceRequest::Handshake {
            protocol: CLIENT_PROTOCOL_VERSION,
        },
    });
    let mut stream = dial(&cluster, cluster.master_addr(), Service::Master).await;
    stream
        .write_all(&framed(&bincode_of(&request)))
        .await
        .unwrap();

    let mut len = [0u8; 4];
    tokio::time::timeout(BOUND, stream.read_exact(&mut len))
        .await
        .expect("an answer within the bound")
        .expect("an answer, not a closed connection");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.unwrap();
    let response: tarpc::Response<MasterServiceResponse> = {
        use bincode::Options;
        bincode::DefaultOptions::new().deserialize(&body).unwrap()
    };
    assert_eq!(response.request_id, 42);
    match response.message {
        Ok(MasterServiceResponse::Handshake(Ok(info))) => assert!(info.chunk_size > 0),
        other => panic!("expected a handshake reply, got {other:?}"),
    }
    assert_eq!(
        OVERFLOW_PANICS.load(Ordering::SeqCst),
        0,
        "nothing panicked"
    );
    let stats = cluster.master().rpc().stats();
    assert_eq!(stats.clamped_deadlines.load(Ordering::Relaxed), 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_and_memory_stays_bounded() {
    const BUDGET: usize = 1 << 20;
    let limits = Limits {
        buffer_bytes: BUDGET,
        ..Limits::default()
    };
    let cluster = TestCluster::start(options(limits, 1)).await;
    let master = cluster.master().rpc().clone();

    // A namespace frame over the master service's 8 MiB is refused from its header alone.
    // (Before: anything up to 65 MiB was buffered.)
    let mut stream = dial(&cluster, cluster.master_addr(), Service::Master).await;
    stream.write_all(&(9u32 << 20).to_be_bytes()).await.unwrap();
    let _ = stream.write_all(&[0u8; 1024]).await;
    read_to_close(&mut stream, "a 9 MiB namespace frame").await;
    assert_eq!(master.stats().oversized_frames.load(Ordering::Relaxed), 1);
    // So is a data frame over the chunk service's 16 MiB, at a chunkserver.
    let chunkserver = cluster.chunkserver(0).rpc().clone();
    let mut stream = dial(
        &cluster,
        cluster.chunkserver(0).local_addr(),
        Service::Chunk,
    )
    .await;
    stream
        .write_all(&(60u32 << 20).to_be_bytes())
        .await
        .unwrap();
    read_to_close(&mut stream, "a 60 MiB chunk frame").await;
    assert_eq!(
        chunkserver.stats().oversized_frames.load(Ordering::Relaxed),
        1
    );

    // 20 peers each send most of a 4 MiB cluster frame (legal: a hello may be that large):
    // only the budget's worth is ever buffered, the rest wait unread.
    let mut peers = Vec::new();
    for _ in 0..20 {
        let mut stream = dial(&cluster, cluster.master_addr(), Service::Cluster).await;
        stream.write_all(&(4u32 << 20).to_be_bytes()).await.unwrap();
        peers.push(stream);
    }
    let junk = Arc::new(content(7, 3 << 20));
    let mut senders = Vec::new();
    for mut stream in peers {
        let junk = junk.clone();
        // Writes block once the server stops reading; they end when the test drops them.
        senders.push(tokio::spawn(async move {
            let _ = stream.write_all(&junk).await;
            stream
        }));
    }
    wait_until("the budget to be in use", BOUND, || async {
        master.buffered_bytes() == BUDGET
    })
    .await;
    // Small calls are not held up by large frames waiting for the budget.
    let client = cluster.client().await;
    client.mkdir("/still-answering").await.unwrap();
    assert!(client.stat("/still-answering").await.is_ok());
    assert_eq!(
        master.stats().buffered_peak.load(Ordering::Relaxed),
        BUDGET as u64,
        "never more than the budget buffered"
    );
    for sender in senders {
        sender.abort();
    }
    wait_until("the budget to be given back", BOUND, || async {
        master.buffered_bytes() == 0
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_clients_redial() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let cluster = TestCluster::start(options(limits, 2)).await;
    let master = cluster.master().rpc().clone();

    // A connection that never sends anything gets the idle notice, then is closed. (Before: it
    // stayed open for ever.)
    let mut silent = dial(&cluster, cluster.master_addr(), Service::Master).await;
    let got = read_to_close(&mut silent, "a silent connection").await;
    assert_eq!(got, [0xff, 0xff, 0xff, 0xff, 2], "the idle notice");

    // A client's connections to the master and to chunkservers close while it is idle, and it
    // dials again by itself.
    let client = cluster.client().await;
    let data = content(3, 300 * 1024);
    let mut file = client.create("/idle").await.unwrap();
    file.write_all(&data).await.unwrap();
    file.close().await.unwrap();
    let closed = |i: usize| {
        cluster
            .chunkserver(i)
            .rpc()
            .stats()
            .idle_closed
            .load(Ordering::Relaxed)
    };
    let (master_closed, cs_closed) = (
        master.stats().idle_closed.load(Ordering::Relaxed),
        closed(0) + closed(1),
    );
    wait_until(
        "the client's connections to close as idle",
        BOUND,
        || async {
            master.stats().idle_closed.load(Ordering::Relaxed) > master_closed
                && closed(0) + closed(1) > cs_closed
        },
    )
    .await;
    client
        .stat("/idle")
        .await
        .expect("a stat after the idle close");
    let mut file = client.open("/idle").await.unwrap();
    let mut back = Vec::new();
    file.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "the file reads back after the redial");

    // Heartbeats keep each chunkserver's link busy: it is never closed, no second hello.
    for i in 0..2 {
        let hellos = cluster
            .chunkserver(i)
            .link_stats()
            .hellos
            .load(Ordering::Relaxed);
        assert_eq!(hellos, 1, "chunkserver {i} said hello once");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_clearly() {
    // The one chunkserver's link to the master is one connection of three.
    let limits = Limits {
        max_connections: 3,
        ..Limits::default()
    };
    let mut cluster = TestCluster::start(options(limits, 1)).await;
    let master = cluster.master().rpc().clone();
    wait_until(
        "only the chunkserver's link to be connected",
        BOUND,
        || async { master.stats().connections.load(Ordering::Acquire) == 1 },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(dial(&cluster, cluster.master_addr(), Service::Master).await);
    }
    wait_until("the held connections to be counted", BOUND, || async {
        master.stats().connections.load(Ordering::Acquire) == 3
    })
    .await;

    // One more: a clear error, quickly. (Before: no limit; with descriptors exhausted, a hang.)
    let started = std::time::Instant::now();
    let refused = cluster
        .client_with_result(kfs_client::ClientOptions::default())
        .await;
    let Err(KfsError::Unavailable(why)) = refused else {
        panic!("expected Unavailable, got {:?}", refused.map(|_| ()));
    };
    assert!(why.contains("connection limit"), "{why}");
    assert!(started.elapsed() < BOUND);
    assert!(master.stats().refused.load(Ordering::Relaxed) >= 1);
    // The raw notice, as any client sees it.
    let mut raw = dial_raw(&cluster, cluster.master_addr(), Service::Master).await;
    assert_eq!(
        read_to_close(&mut raw, "a refused connection").await,
        [0xff, 0xff, 0xff, 0xff, 1]
    );

    // A chunkserver's link to the master is never refused: a chunkserver started while
    // clients fill the limit still says hello (and is not declared dead).
    cluster.stop_chunkserver(0).await;
    wait_until("the chunkserver's link to close", BOUND, || async {
        master.stats().connections.load(Ordering::Acquire) == 2
    })
    .await;
    held.push(dial(&cluster, cluster.master_addr(), Service::Master).await);
    wait_until("clients to fill the limit", BOUND, || async {
        master.stats().connections.load(Ordering::Acquire) == 3
    })
    .await;
    cluster.start_chunkserver(0).await;
    wait_until(
        "the started chunkserver's hello accepted",
        BOUND,
        || async {
            cluster
                .chunkserver(0)
                .link_stats()
                .hellos
                .load(Ordering::Acquire)
                >= 1
        },
    )
    .await;

    // Once connections go, clients get in again.
    drop(held);
    wait_until("held connections to close", BOUND, || async {
        master.stats().connections.load(Ordering::Acquire) < 3
    })
    .await;
    let client = cluster.client().await;
    client.mkdir("/in").await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_slowloris_headers_time_out() {
    kfs_tests::init_logging();
    let router = || metrics_router(Arc::new(Registry::default()), None);
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 1,
        ..Default::default()
    };
    let server = HttpServer::start_with("127.0.0.1:0".parse().unwrap(), router(), limits)
        .await
        .unwrap();

    // Headers sent a little at a time and never finished: the connection is closed. (Before:
    // axum::serve gave hyper no timer, so this connection, and its descriptor, stayed for ever.)
    let mut slow = TcpStream::connect(server.local_addr()).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_to_close(&mut slow, "unfinished headers").await;

    // At the connection limit, a clear 503 instead of a wait.
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 1,
        ..Default::default()
    };
    let server = HttpServer::start_with("127.0.0.1:0".parse().unwrap(), router(), limits)
        .await
        .unwrap();
    let mut first = TcpStream::connect(server.local_addr()).await.unwrap();
    first
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    first.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the first connection is served");
    let url = format!("http://{}/metrics", server.local_addr());
    let second = tokio::time::timeout(BOUND, reqwest::get(&url))
        .await
        .expect("an answer within the bound")
        .unwrap();
    assert_eq!(second.status(), 503);
    assert!(second.text().await.unwrap().contains("connection limit"));
    drop(first);
}
