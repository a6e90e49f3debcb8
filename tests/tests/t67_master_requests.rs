//! Requests a buggy or hostile peer may send the master, straight over its RPC interface: none
//! may destroy data or make the namespace lie (issue 15, "destroying data on request").
//!
//! - `extend_length` beyond what was written is refused (a 3-byte file made 8 EiB).

use kfs_common::KfsError;
use kfs_tests::{ClusterOptions, TestCluster, content, ctx};

const CHUNK: u64 = 256 * 1024;

#[tokio::test]
async fn extend_length_beyond_the_written_data_is_refused() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    cluster.wait_for_alive(3).await;
    let client = cluster.client().await;
    let master = cluster.master_client().await;

    let f = client.create("/small").await.unwrap();
    f.write_at(0, b"abc").await.unwrap();
    let fid = f.fid();
    f.close().await.unwrap();

    for (length, why) in [
        (8u64 << 60, "nothing was written"),
        (2 * CHUNK, "nothing was written"),
        (4, "holds fewer than 4 bytes"),
    ] {
        match master.extend_length(ctx(), fid, length).await.unwrap() {
            Err(KfsError::InvalidArgument(text)) => {
                assert!(
                    text.contains("'/small'") && text.contains(why),
                    "{length}: {text}"
                )
            }
            other => panic!("extend_length({length}) answered {other:?}"),
        }
    }
    assert_eq!(client.stat("/small").await.unwrap().size, 3);
    // Lengths within the file are accepted (and change nothing).
    assert_eq!(
        master
            .extend_length(ctx(), fid, 3)
            .await
            .unwrap()
            .unwrap()
            .size,
        3
    );

    // A file with a hole: data written only in its third chunk; its length is the end of that.
    let data = content(7, 100);
    let g = client.create("/holey").await.unwrap();
    g.write_at(2 * CHUNK + 10, &data).await.unwrap();
    let gid = g.fid();
    assert_eq!(g.close().await.unwrap().size, 2 * CHUNK + 110);
    assert!(matches!(
        master
            .extend_length(ctx(), gid, 2 * CHUNK + 111)
            .await
            .unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    let back = client.open("/holey").await.unwrap();
    assert_eq!(back.read_at(0, 10).await.unwrap(), vec![0; 10]);
    assert_eq!(back.read_at(2 * CHUNK + 10, 100).await.unwrap(), data);

    // An empty file has no chunk to vouch for any length.
    let e = client.create("/empty").await.unwrap();
    let eid = e.fid();
    e.close().await.unwrap();
    assert!(matches!(
        master.extend_length(ctx(), eid, 1).await.unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    cluster.shutdown().await;
}
