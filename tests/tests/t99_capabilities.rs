//! Capabilities (issue 19, item 4): a chunkserver serves a client's read or write only with
//! the master's signed capability for exactly that chunk, version, access and bytes, issued to
//! that client's certificate, and not past its expiry; clients renew them without a caller
//! noticing. Played against the chunk service directly, as an attacker holding a certificate
//! of the cluster (a user's) would.

use kfs_client::ClientOptions;
use kfs_common::proto::chunk::{ChunkServiceClient, WriteRequest};
use kfs_common::proto::master::{self, Layout, MasterServiceClient};
use kfs_common::proto::users::NewUser;
use kfs_common::proto::{CLIENT_PROTOCOL_VERSION, Payload, cluster};
use kfs_common::security::capability::{Access, Capability};
use kfs_common::security::{self, Role, Security};
use kfs_common::{ChunkVersion, KfsError};
use kfs_tests::{ClusterOptions, TestCluster, content, ctx};
use std::sync::Arc;
use std::time::Duration;

async fn master_as(cluster: &TestCluster, security: &Security) -> MasterServiceClient {
    let m = master::connect(cluster.master_addr(), security)
        .await
        .unwrap();
    m.handshake(ctx(), CLIENT_PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    m
}

async fn chunkserver_as(addr: std::net::SocketAddr, security: &Security) -> ChunkServiceClient {
    kfs_common::proto::chunk::connect(addr, security)
        .await
        .unwrap()
}

fn denied<T: std::fmt::Debug>(
    result: Result<Result<T, KfsError>, tarpc::client::RpcError>,
    says: &str,
) {
    match result.expect("the call is answered") {
        Err(KfsError::PermissionDenied(m)) => assert!(m.contains(says), "{m} / {says}"),
        other => panic!("expected PermissionDenied ({says}), got {other:?}"),
    }
}

/// A user of `cluster` (added by the admin), as a `Security`.
async fn user(cluster: &TestCluster, name: &str, dir: &tempfile::TempDir) -> Security {
    let admin = cluster.client().await;
    let added = admin
        .add_user(NewUser {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let text = String::from_utf8(added.credentials.unwrap().into_vec()).unwrap();
    let path = dir.path().join(format!("{name}.credentials"));
    security::files::write_secret(&path, &text).unwrap();
    Security::Tls(Arc::new(security::files::load_credentials(&path).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunkservers_serve_only_what_a_capability_names_to_whom_it_was_signed() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let admin = cluster.client().await;
    let data = content(1, 600_000);
    admin.write("/big", &data).await.unwrap();
    admin.write("/small", b"a small packed file").await.unwrap();
    admin
        .write("/other", b"another user's packed file")
        .await
        .unwrap();
    let fid = admin.stat("/big").await.unwrap().fid;

    let me = cluster.security().clone();
    let m = master_as(&cluster, &me).await;
    let (chunks, caps) = m
        .locate_signed(ctx(), fid, 0, u64::MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(chunks.len() >= 2, "several chunks: {chunks:?}");
    assert_eq!(caps.len(), chunks.len(), "one capability per chunk");
    let (first, second) = (&chunks[0], &chunks[1]);
    let cap_of = |chunk| caps.iter().find(|c| c.chunk == chunk).unwrap().clone();
    let cap = cap_of(first.chunk);
    assert_eq!(cap.access, Access::Read);
    let cs = chunkserver_as(first.replicas[0].addr, &me).await;

    // With the capability, the bytes; without one, or with anything changed, nothing.
    let got = cs
        .read_with(ctx(), cap.clone(), 0, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], &data[..1000]);
    denied(
        cs.read(ctx(), first.chunk, first.version, 0, 1000).await,
        "without a capability",
    );
    let mut forged = cap.clone();
    forged.mac[3] ^= 0x40;
    denied(
        cs.read_with(ctx(), forged, 0, 1000).await,
        "not the master's",
    );
    let another = Capability {
        chunk: second.chunk,
        version: second.version,
        ..cap.clone()
    };
    denied(
        cs.read_with(ctx(), another, 0, 1000).await,
        "not the master's",
    );
    let later = Capability {
        expires_ms: cap.expires_ms + 3_600_000,
        ..cap.clone()
    };
    denied(
        cs.read_with(ctx(), later, 0, 1000).await,
        "not the master's",
    );
    let newer = Capability {
        version: ChunkVersion(first.version.0 + 1),
        ..cap.clone()
    };
    denied(
        cs.read_with(ctx(), newer, 0, 1000).await,
        "not the master's",
    );

    // A read capability writes nothing; a writer's write carries no serial number.
    let write = WriteRequest {
        chunk: first.chunk,
        version: first.version,
        offset: 0,
        data: Payload::from_vec(b"overwritten".to_vec()),
        serial: None,
        chain: first.replicas[1..].to_vec(),
    };
    denied(
        cs.write_with(ctx(), cap.clone(), write.clone()).await,
        "allows Read",
    );
    denied(
        cs.write(
            ctx(),
            WriteRequest {
                serial: Some(1),
                ..write.clone()
            },
        )
        .await,
        "without a capability",
    );

    // Another certificate of the cluster (a user's) cannot use the admin's capability.
    let dir = tempfile::tempdir().unwrap();
    let mallory = user(&cluster, "mallory", &dir).await;
    let theirs = chunkserver_as(first.replicas[0].addr, &mallory).await;
    denied(
        theirs.read_with(ctx(), cap.clone(), 0, 1000).await,
        "not this certificate's",
    );

    // A packed file's capability opens its record and nothing else of the volume; locating it
    // as a chunk (as old readers did) signs nothing.
    let small = admin.stat("/small").await.unwrap().fid;
    let (layout, caps) = m
        .layout_signed(ctx(), small, 0, u64::MAX)
        .await
        .unwrap()
        .unwrap();
    let Layout::Packed(extent) = layout else {
        panic!("/small is packed: {layout:?}")
    };
    let record = caps[0].clone();
    assert_eq!(
        (record.offset, record.len),
        (extent.offset, u64::from(extent.len))
    );
    let vs = chunkserver_as(extent.replicas[0].addr, &me).await;
    let got = vs
        .read_record_with(ctx(), record.clone(), extent.offset, small, extent.len)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], b"a small packed file");
    denied(
        vs.read_with(ctx(), record.clone(), 0, 4096).await,
        "record of",
    );
    let other = admin.stat("/other").await.unwrap().fid;
    let (other_layout, _) = m.layout_signed(ctx(), other, 0, 1).await.unwrap().unwrap();
    let Layout::Packed(other_extent) = other_layout else {
        panic!("/other is packed")
    };
    denied(
        vs.read_record_with(
            ctx(),
            record.clone(),
            other_extent.offset,
            other,
            other_extent.len,
        )
        .await,
        "record of",
    );
    denied(
        vs.read_record_with(ctx(), record, other_extent.offset, small, other_extent.len)
            .await,
        "opens bytes",
    );
    let (_, none) = m
        .locate_signed(ctx(), small, 0, u64::MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(none.is_empty(), "a volume is never signed whole: {none:?}");
    denied(
        vs.read_volume(ctx(), extent.volume, extent.version, 0, 4096)
            .await,
        "without a capability",
    );

    // A user who may only read a file gets no lease on its chunks by naming them: no write
    // capability, no version move, no renewal.
    let hers = master_as(&cluster, &mallory).await;
    denied(
        hers.report_failure_signed(ctx(), first.chunk, first.version, vec![])
            .await,
        "no write",
    );
    denied(
        hers.renew_lease(ctx(), first.chunk, first.version).await,
        "no write",
    );
    // Nor does pointing her own file at another file's record open that record: the
    // capability is for her file's record, and the record is not hers.
    admin.mkdir("/shared").await.unwrap();
    admin
        .set_attr(
            "/shared",
            master::SetAttr {
                mode: Some(0o777),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let her_client = cluster
        .client_with(ClientOptions::default().with_security(mallory.clone()))
        .await;
    her_client.write("/shared/mine", b"mine").await.unwrap();
    let mine = her_client.stat("/shared/mine").await.unwrap().fid;
    let (small_layout, _) = m.layout_signed(ctx(), small, 0, 1).await.unwrap().unwrap();
    let Layout::Packed(theirs_extent) = small_layout else {
        panic!("/small is packed")
    };
    let pointed = hers
        .set_extent(
            ctx(),
            mine,
            theirs_extent.volume,
            theirs_extent.offset,
            theirs_extent.len,
        )
        .await
        .unwrap();
    // (The master takes the extent today: it cannot see whose record lies there. Were it to
    // refuse, there would be nothing to read.)
    if pointed.is_ok() {
        let (_, caps) = hers
            .layout_signed(ctx(), mine, 0, 1)
            .await
            .unwrap()
            .unwrap();
        let at = chunkserver_as(theirs_extent.replicas[0].addr, &mallory).await;
        denied(
            at.read_record_with(
                ctx(),
                caps[0].clone(),
                theirs_extent.offset,
                small,
                theirs_extent.len,
            )
            .await,
            "record of",
        );
        let as_mine = at
            .read_record_with(
                ctx(),
                caps[0].clone(),
                theirs_extent.offset,
                mine,
                theirs_extent.len,
            )
            .await
            .unwrap();
        assert!(
            as_mine.is_err(),
            "another file's record read as hers: {as_mine:?}"
        );
    }

    // The keys are for chunkservers alone: the cluster service refuses a user at the handshake.
    assert!(
        cluster::connect(cluster.master_addr(), &me).await.is_err() || {
            let c = cluster::connect(cluster.master_addr(), &me).await.unwrap();
            c.capability_keys(ctx()).await.is_err()
        }
    );
    // A chunkserver's certificate may call the plain data calls (the chains and copies do).
    let peer = cluster.peer_security(Role::Chunkserver, "cs-peer");
    let as_peer = chunkserver_as(first.replicas[0].addr, &peer).await;
    let got = as_peer
        .read(ctx(), first.chunk, first.version, 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], &data[..10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_capabilities_are_refused_and_clients_renew_them_unseen() {
    let cluster = TestCluster::start(ClusterOptions {
        capability_ms: 1_000,
        ..Default::default()
    })
    .await;
    let client = cluster
        .client_with(ClientOptions::default().with_pack_threshold(0))
        .await;
    let packing = cluster.client().await;
    let first = content(2, 300_000);
    client.write("/f", &first).await.unwrap();
    packing.write("/p", b"packed").await.unwrap();
    let fid = client.stat("/f").await.unwrap().fid;

    let me = cluster.security().clone();
    let m = master_as(&cluster, &me).await;
    let (chunks, caps) = m
        .locate_signed(ctx(), fid, 0, u64::MAX)
        .await
        .unwrap()
        .unwrap();
    let cs = chunkserver_as(chunks[0].replicas[0].addr, &me).await;
    cs.read_with(ctx(), caps[0].clone(), 0, 10)
        .await
        .unwrap()
        .unwrap();

    // Handles opened now outlive several capability lifetimes.
    let reader = client.open("/f").await.unwrap();
    let packed = packing.open("/p").await.unwrap();
    let mut writer = client.open("/f").await.unwrap();
    assert_eq!(reader.read_at(0, 100).await.unwrap(), first[..100]);
    writer.write_at(0, b"before").await.unwrap();
    writer.sync().await.unwrap();

    // Past its expiry and the grace (half of its life): refused as expired.
    let until = caps[0].expires_ms + 600;
    while kfs_common::security::capability::now_ms() <= until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match cs.read_with(ctx(), caps[0].clone(), 0, 10).await.unwrap() {
        Err(KfsError::CapabilityExpired { chunk }) => assert_eq!(chunk, caps[0].chunk),
        other => panic!("expected CapabilityExpired, got {other:?}"),
    }

    // The open handles carry on: their capabilities are renewed, nothing shows.
    assert_eq!(
        reader.read_at(200_000, 100).await.unwrap(),
        first[200_000..200_100]
    );
    assert_eq!(packed.read_at(0, 100).await.unwrap(), b"packed");
    writer.write_at(100_000, b"after").await.unwrap();
    writer.sync().await.unwrap();
    writer.close().await.unwrap();
    packing.write("/p2", b"another packed file").await.unwrap();
    let back = client.read("/f").await.unwrap();
    assert_eq!(&back[..6], b"before");
    assert_eq!(&back[100_000..100_005], b"after");
    assert_eq!(packing.read("/p2").await.unwrap(), b"another packed file");
    assert_eq!(
        client.checksum("/f").await.unwrap().length,
        first.len() as u64
    );
}
