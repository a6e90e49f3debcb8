//! Every connection states its protocol version first (issue 16, item 2): a client → master,
//! chunkserver → master, or client/chunkserver → chunkserver connection of a version the server
//! does not speak is refused with an error that names both versions, before any message is
//! exchanged, never with an opaque decode failure.

use kfs_common::KfsError;
use kfs_common::rpc::{self, ProtocolMismatch, Service, protocol_mismatch};
use kfs_common::security::{Role, Security};
use kfs_tests::{ClusterOptions, TestCluster};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(20);

/// Connects to `service` at `addr` stating `version`, as a chunkserver to the cluster service
/// and as the admin to the others; the error if refused.
async fn refusal(
    cluster: &TestCluster,
    addr: SocketAddr,
    service: Service,
    version: u32,
) -> Option<ProtocolMismatch> {
    let security = match service {
        Service::Cluster => cluster.peer_security(Role::Chunkserver, "t64"),
        _ => cluster.security().clone(),
    };
    let connected = tokio::time::timeout(
        BOUND,
        rpc::connect_speaking::<(), ()>(addr, service, version, &security),
    )
    .await
    .expect("answered within the bound");
    match connected {
        Ok(_) => None,
        Err(e) => Some(protocol_mismatch(&e).unwrap_or_else(|| panic!("{service}: {e}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_refuses_a_version_it_does_not_speak_naming_both() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..ClusterOptions::default()
    })
    .await;
    let targets = [
        (Service::Master, cluster.master_addr()),
        (Service::Cluster, cluster.master_addr()),
        (Service::Chunk, cluster.chunkserver(0).local_addr()),
    ];
    for (service, addr) in targets {
        let (oldest, newest) = service.protocol();
        for version in oldest..=newest {
            assert_eq!(
                refusal(&cluster, addr, service, version).await,
                None,
                "{service} v{version}"
            );
        }
        for version in [newest + 1, 1000, oldest - 1] {
            let m = refusal(&cluster, addr, service, version)
                .await
                .unwrap_or_else(|| panic!("{service} accepted version {version}"));
            assert_eq!(
                (m.service, m.ours, m.oldest, m.newest),
                (service, version, oldest, newest)
            );
            let text = m.to_string();
            assert!(
                text.contains(&format!("versions {oldest} to {newest}"))
                    && text.contains(&format!("speaks version {version}")),
                "{text}"
            );
        }
    }
    // The servers carry on serving this build's clients.
    let client = cluster.client().await;
    let mut f = client.create("/after").await.unwrap();
    f.write_all(b"still served").await.unwrap();
    f.close().await.unwrap();
    assert_eq!(client.stat("/after").await.unwrap().size, 12);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_no_version_is_refused_not_misread() {
    // Raw bytes on plain TCP: an insecure cluster (a secured one answers that TLS is required,
    // t97_security; inside TLS the preamble is the same).
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        secure: false,
        ..ClusterOptions::default()
    })
    .await;
    // A peer of a build before the preamble: the service byte, then straight a frame. The
    // frame's length is read as its version and refused with the notice, not parsed.
    let mut stream = TcpStream::connect(cluster.chunkserver(0).local_addr())
        .await
        .unwrap();
    stream.write_all(&[Service::Chunk as u8]).await.unwrap();
    stream.write_all(&48u32.to_be_bytes()).await.unwrap();
    stream.write_all(&[0u8; 48]).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut got))
        .await
        .expect("closed within the bound")
        .ok();
    let (oldest, newest) = Service::Chunk.protocol();
    let mut notice = vec![0xff, 0xff, 0xff, 0xff, 3];
    notice.extend_from_slice(&oldest.to_be_bytes());
    notice.extend_from_slice(&newest.to_be_bytes());
    assert_eq!(got, notice);
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_client_library_reports_a_master_of_another_version() {
    // A master that speaks only versions of the client protocol newer than ours.
    let ours = Service::Master.protocol().1;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut peer, _)) = listener.accept().await else {
                return;
            };
            let mut preamble = [0u8; 5];
            if peer.read_exact(&mut preamble).await.is_err() {
                continue;
            }
            let mut notice = vec![0xff, 0xff, 0xff, 0xff, 3];
            notice.extend_from_slice(&(ours + 1).to_be_bytes());
            notice.extend_from_slice(&(ours + 3).to_be_bytes());
            let _ = peer.write_all(&notice).await;
        }
    });
    let options = kfs_client::ClientOptions::default().with_security(Security::Insecure);
    let connected = tokio::time::timeout(BOUND, kfs_client::Client::connect_with(addr, options))
        .await
        .expect("answered within the bound");
    match connected {
        Err(e @ KfsError::IncompatibleProtocol { .. }) => {
            assert_eq!(
                e,
                KfsError::IncompatibleProtocol {
                    ours,
                    theirs: ours + 1
                },
                "the oldest version the master speaks, being newer than ours"
            );
            let text = e.to_string();
            assert!(
                text.contains(&(ours + 1).to_string()) && text.contains(&ours.to_string()),
                "{text}"
            );
        }
        other => panic!("expected IncompatibleProtocol, got {:?}", other.map(|_| ())),
    }
}
