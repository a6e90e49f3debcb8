//! Nobody gets in who does not belong (issue 19): every connection is TLS 1.3 with mutual
//! authentication. A plain-TCP peer is refused at every port with an error saying TLS is
//! required; a certificate of another cluster's CA is refused in the handshake, both ways; a
//! process with a user's certificate cannot join as a chunkserver, and a chunkserver cannot
//! speak for another's id; and what crosses the wire is TLS, not the data.

use kfs_common::proto::cluster::{self, HelloRequest};
use kfs_common::proto::{PROTOCOL_VERSION, chunk, master};
use kfs_common::rpc::{self, Service};
use kfs_common::security::{self, ClusterFiles, Role, Security};
use kfs_common::{KfsError, ServerId};
use kfs_tests::{ClusterOptions, TestCluster, ctx};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(20);

/// The three ports a cluster serves RPC on, with the service each speaks.
fn ports(cluster: &TestCluster) -> [(Service, SocketAddr); 3] {
    [
        (Service::Master, cluster.master_addr()),
        (Service::Cluster, cluster.master_addr()),
        (Service::Chunk, cluster.chunkserver(0).local_addr()),
    ]
}

/// Connects to `service` at `addr` as `security`; the error, if refused.
async fn dial(addr: SocketAddr, service: Service, security: &Security) -> Option<std::io::Error> {
    let (_, newest) = service.protocol();
    tokio::time::timeout(
        BOUND,
        rpc::connect_speaking::<(), ()>(addr, service, newest, security),
    )
    .await
    .expect("answered within the bound")
    .err()
}

/// Another cluster's admin credentials (a CA this cluster does not trust).
fn stranger() -> (tempfile::TempDir, Security) {
    let dir = tempfile::tempdir().unwrap();
    let files = ClusterFiles::new(dir.path());
    files.init("elsewhere").unwrap();
    let admin =
        security::files::load_credentials(&files.path(security::ADMIN_CREDENTIALS)).unwrap();
    (dir, Security::Tls(Arc::new(admin)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_peer_is_refused_at_every_port_saying_tls_is_required() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    for (service, addr) in ports(&cluster) {
        // Through the transport: a clear error, not a hang or a decode failure.
        let e = dial(addr, service, &Security::Insecure)
            .await
            .unwrap_or_else(|| panic!("{service} at {addr} served plain TCP"));
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("requires TLS"), "{e}");
        // Raw bytes: the preamble in the clear is answered with the notice and nothing else.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&rpc::preamble::bytes(service, service.protocol().1))
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut got))
            .await
            .expect("closed within the bound")
            .ok();
        assert_eq!(got, [0xff, 0xff, 0xff, 0xff, 4], "{service}");
    }
    // Garbage that is neither TLS nor a preamble is closed without an answer.
    let mut stream = tokio::net::TcpStream::connect(cluster.master_addr())
        .await
        .unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut got))
        .await
        .expect("closed within the bound")
        .ok();
    assert!(!String::from_utf8_lossy(&got).contains("HTTP"), "{got:?}");
    // The client library says what to do.
    let options = kfs_client::ClientOptions::default().with_security(Security::Insecure);
    let e = kfs_client::Client::connect_with(cluster.master_addr(), options)
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, KfsError::PermissionDenied(_)), "{e:?}");
    assert!(e.to_string().contains("KFS_CREDENTIALS"), "{e}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_cluster_is_refused_both_ways() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let (_dir, stranger) = stranger();
    for (service, addr) in ports(&cluster) {
        let e = dial(addr, service, &stranger)
            .await
            .unwrap_or_else(|| panic!("{service} at {addr} let a stranger in"));
        // The stranger's side refuses the server's certificate first (not of its CA).
        assert!(
            e.to_string().contains("TLS handshake") || e.to_string().contains("certificate"),
            "{service}: {e}"
        );
    }
    // A server of another cluster: this cluster's client refuses it, and it refuses the client.
    let other = TestCluster::start(ClusterOptions {
        chunkservers: 0,
        ..Default::default()
    })
    .await;
    let e = dial(other.master_addr(), Service::Master, cluster.security())
        .await
        .expect("refused");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
    let e = kfs_client::Client::connect_with(
        other.master_addr(),
        kfs_client::ClientOptions::default().with_security(cluster.security().clone()),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(e, KfsError::PermissionDenied(_)), "{e:?}");
    // This cluster still serves its own.
    let client = cluster.client().await;
    client.mkdir_all("/still/served").await.unwrap();
    other.shutdown().await;
    cluster.shutdown().await;
}

fn hello(server: ServerId) -> HelloRequest {
    HelloRequest {
        protocol: PROTOCOL_VERSION,
        server,
        addr: "127.0.0.1:1".parse().unwrap(),
        space: Default::default(),
        chunks: Vec::new(),
        corrupt: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_chunkserver_cannot_join_or_speak_for_another() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let real = cluster.chunkserver(0).store().server_id();
    // A user's certificate is not admitted to the cluster service at all.
    let e = dial(cluster.master_addr(), Service::Cluster, cluster.security())
        .await
        .expect("a user refused the cluster service");
    assert!(
        e.to_string()
            .contains("does not admit a user certificate to the cluster"),
        "{e}"
    );
    // Nor is a chunkserver's to the namespace service.
    let as_server = cluster.peer_security(Role::Chunkserver, &security::chunkserver_name(real));
    let e = dial(cluster.master_addr(), Service::Master, &as_server)
        .await
        .expect("a chunkserver refused the namespace service");
    assert!(e.to_string().contains("chunkserver certificate"), "{e}");
    // A chunkserver's own certificate names its id: it may not say hello as another.
    let intruder = cluster.peer_security(
        Role::Chunkserver,
        &security::chunkserver_name(ServerId(0xbad)),
    );
    let link = cluster::connect(cluster.master_addr(), &intruder)
        .await
        .unwrap();
    let refused = link.hello(ctx(), hello(real)).await.unwrap();
    assert!(
        matches!(&refused, Err(KfsError::PermissionDenied(m)) if m.contains(&real.to_string())),
        "{refused:?}"
    );
    // An enrolled host's certificate (any name) is bound to the first id it says hello with:
    // the real server's id is already bound to the real server's certificate.
    let enrolled = cluster.peer_security(Role::Chunkserver, "host-7");
    let link = cluster::connect(cluster.master_addr(), &enrolled)
        .await
        .unwrap();
    let refused = link.hello(ctx(), hello(real)).await.unwrap();
    assert!(
        matches!(refused, Err(KfsError::PermissionDenied(_))),
        "{refused:?}"
    );
    link.hello(ctx(), hello(ServerId(0x7007)))
        .await
        .unwrap()
        .expect("a new id binds to the enrolled certificate");
    // One id per enrolled certificate.
    let refused = link.hello(ctx(), hello(ServerId(0x7008))).await.unwrap();
    assert!(
        matches!(&refused, Err(KfsError::PermissionDenied(m)) if m.contains("already chunkserver")),
        "{refused:?}"
    );
    // The certificate a chunkserver makes itself proves its id and takes it over from an
    // enrolled certificate that claimed it first; that one may no longer speak for it.
    let own = cluster.peer_security(
        Role::Chunkserver,
        &security::chunkserver_name(ServerId(0x7007)),
    );
    let owner = cluster::connect(cluster.master_addr(), &own).await.unwrap();
    owner
        .hello(ctx(), hello(ServerId(0x7007)))
        .await
        .unwrap()
        .expect("its own id");
    let refused = link.hello(ctx(), hello(ServerId(0x7007))).await.unwrap();
    assert!(
        matches!(refused, Err(KfsError::PermissionDenied(_))),
        "{refused:?}"
    );
    // The real server is still the only one alive and serving.
    let servers = cluster
        .master_client()
        .await
        .chunkservers(ctx())
        .await
        .unwrap()
        .unwrap();
    let alive: Vec<ServerId> = servers
        .iter()
        .filter(|s| s.state == master::ServerState::Alive)
        .map(|s| s.server)
        .collect();
    assert!(alive.contains(&real), "{servers:?}");
    cluster.shutdown().await;
}

/// Writes a file full of a marker through a cluster whose chunkservers sit behind links, then
/// says whether the marker crossed a link in the clear, and what first bytes the links saw.
async fn marker_on_the_wire(secure: bool) -> (bool, Vec<u8>) {
    const MARKER: &[u8] = b"KFS-PLAINTEXT-MARKER-";
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 2,
        links: true,
        secure,
        ..Default::default()
    })
    .await;
    let client = cluster
        .unpacked_client_with(kfs_client::ClientOptions::default())
        .await;
    let data: Vec<u8> = MARKER.iter().copied().cycle().take(300_000).collect();
    client.write("/marker", &data).await.unwrap();
    assert_eq!(client.read("/marker").await.unwrap(), data);
    let mut seen = false;
    let mut first = Vec::new();
    for i in 0..2 {
        let (to_master, inbound) = cluster.links(i);
        for link in [to_master, inbound] {
            let captured = link.captured();
            seen |= captured.bytes.windows(MARKER.len()).any(|w| w == MARKER);
            first.extend(captured.first_bytes);
        }
    }
    cluster.shutdown().await;
    (seen, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_crosses_the_wire_is_tls_not_the_data() {
    let (seen, first) = marker_on_the_wire(true).await;
    assert!(!first.is_empty());
    // 0x16: a TLS handshake record opens every connection, both ways.
    assert!(first.iter().all(|&b| b == 0x16), "first bytes {first:x?}");
    assert!(!seen, "the file's bytes crossed a link in the clear");
    // The same run insecure shows the capture does see data in the clear.
    let (seen, first) = marker_on_the_wire(false).await;
    assert!(
        seen,
        "an insecure cluster's data should be visible on the wire"
    );
    assert!(first.iter().all(|&b| b != 0x16), "first bytes {first:x?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chunk_service_serves_this_clusters_clients_and_refuses_others() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let addr = cluster.chunkserver(0).local_addr();
    let ours = chunk::connect(addr, cluster.security()).await.unwrap();
    ours.checksum(ctx(), kfs_common::ChunkId(1), kfs_common::ChunkVersion(1))
        .await
        .expect("an answer (an error about the chunk, not the connection)")
        .ok();
    let (_dir, stranger) = stranger();
    assert!(chunk::connect(addr, &stranger).await.is_err());
    assert!(chunk::connect(addr, &Security::Insecure).await.is_err());
    cluster.shutdown().await;
}

/// A site certificate for `localhost` from a CA of the test's own (as an operator's ACME or
/// company CA would issue): (the CA certificate, the leaf's PEM, its key's PEM).
fn site_certificate() -> (rustls_pki_types::CertificateDer<'static>, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.der().clone(), leaf.pem(), key.serialize_pem())
}

/// One HTTPS request to `addr` (verified as `localhost` against `ca`); the whole response.
async fn https_request(
    addr: SocketAddr,
    ca: &rustls_pki_types::CertificateDer<'static>,
    request: &str,
) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(BOUND, tls.read_to_end(&mut response)).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_https_with_the_sites_certificate() {
    use clap::Parser as _;
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await;
    client.write("/hello.txt", b"over https\n").await.unwrap();
    let (ca, cert, key) = site_certificate();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    std::fs::write(&cert_path, cert).unwrap();
    security::files::write_secret(&key_path, &key).unwrap();

    /// The gateway's flags as `kfs gateway` parses them.
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        options: kfs_gateway::GatewayOptions,
    }
    let flags = Flags::parse_from([
        "kfs-gateway",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let config = flags.options.config().unwrap();
    let gateway = kfs_gateway::http::start(client, config).await.unwrap();
    let addr = gateway.local_addr();
    let response = https_request(
        addr,
        &ca,
        "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("over https\n"), "{response}");
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(BOUND, plain.read_to_end(&mut got)).await;
    assert!(!String::from_utf8_lossy(&got).contains("over https"));
    // A key others can read is refused, naming the file.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = flags.options.config().expect_err("refused");
    assert!(
        e.downcast_ref::<kfs_gateway::ConfigError>().is_some() && e.to_string().contains("0644"),
        "{e}"
    );
    gateway.shutdown(Duration::from_secs(5)).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_master_may_move_versions_or_make_replicas_on_a_chunkserver() {
    use kfs_common::{ChunkId, ChunkVersion};
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 2,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    client.write("/kept", b"data that must stay").await.unwrap();
    let chunk = client.file_chunks("/kept").await.unwrap()[0].clone();
    let addr = chunk.replicas[0].addr;
    let source = chunk.replicas[1].clone();
    let other_server = cluster.peer_security(Role::Chunkserver, "cs-elsewhere");
    for security in [cluster.security().clone(), other_server] {
        let rpc = chunk::connect(addr, &security).await.unwrap();
        let next = ChunkVersion(chunk.version.0 + 7);
        let refusals = [
            rpc.set_version(ctx(), chunk.chunk, chunk.version, next)
                .await
                .unwrap(),
            rpc.create(ctx(), ChunkId(1 << 40), ChunkVersion(1))
                .await
                .unwrap(),
            rpc.replicate(ctx(), chunk.chunk, chunk.version, source.clone())
                .await
                .unwrap()
                .map(drop),
            rpc.create_volume(ctx(), ChunkId(1 << 41), ChunkVersion(1))
                .await
                .unwrap(),
        ];
        for refused in refusals {
            assert!(
                matches!(&refused, Err(KfsError::PermissionDenied(m)) if m.contains("only the master")),
                "{refused:?}"
            );
        }
    }
    // Nothing moved: the file reads back through its replicas at their version.
    assert_eq!(client.read("/kept").await.unwrap(), b"data that must stay");
    let after = client.file_chunks("/kept").await.unwrap()[0].clone();
    assert_eq!(after.version, chunk.version);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_by_the_server_with_a_clear_error() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let files = ClusterFiles::new(cluster.secrets_dir().unwrap());
    let ca = files.ca().unwrap();
    let who = security::Identity {
        role: Role::User,
        name: "expired".into(),
    };
    // Valid for no time at all: expired by the time it is presented. The client does not
    // check its own certificate, so the server is the one to refuse it.
    let leaf = security::pki::issue(&ca, &who, 0).unwrap();
    let expired = Security::Tls(Arc::new(
        security::TlsContext::new(&ca.cert, &leaf).unwrap(),
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (service, addr) in [
        (Service::Master, cluster.master_addr()),
        (Service::Chunk, cluster.chunkserver(0).local_addr()),
    ] {
        let e = dial(addr, service, &expired).await.expect("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(
            e.to_string().contains("refused this process's certificate"),
            "{e}"
        );
    }
    let e = cluster
        .client_with_result(kfs_client::ClientOptions::default().with_security(expired))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&e, KfsError::PermissionDenied(m) if m.contains("certificate")),
        "{e:?}"
    );
    cluster.shutdown().await;
}
