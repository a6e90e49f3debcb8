//! Users (issue 19, item 3): the master checks every call against the user its certificate
//! names. Owner/group/other bits between two users, a read-only user, a user confined to a
//! subtree (by path and by a guessed file id), the administrator's calls, `whoami`, and a
//! removed or replaced user's certificate refused from the next call on.

use kfs_client::{Client, ClientOptions};
use kfs_common::proto::master::{self, SetAttr};
use kfs_common::proto::users::{FIRST_UID, NewUser, UserAdded};
use kfs_common::security::{self, Security};
use kfs_common::{FileId, KfsError};
use kfs_tests::{ClusterOptions, TestCluster, ctx};
use std::sync::Arc;

/// A client of `cluster` holding the credentials `added` carries.
async fn client_of(cluster: &TestCluster, added: &UserAdded, dir: &tempfile::TempDir) -> Client {
    cluster
        .client_with(ClientOptions::default().with_security(security_of(added, dir)))
        .await
}

/// The security of the credentials `added` carries.
fn security_of(added: &UserAdded, dir: &tempfile::TempDir) -> Security {
    let text = String::from_utf8(added.credentials.clone().expect("issued").into_vec()).unwrap();
    let path = dir.path().join(format!("{}.credentials", added.user.name));
    security::files::write_secret(&path, &text).unwrap();
    Security::Tls(Arc::new(security::files::load_credentials(&path).unwrap()))
}

fn denied(result: Result<impl std::fmt::Debug, KfsError>, says: &str) {
    match result {
        Err(KfsError::PermissionDenied(m)) => assert!(m.contains(says), "{m}"),
        other => panic!("expected PermissionDenied ({says}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_held_to_modes_read_only_and_their_subtree() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let admin = cluster.client().await;
    let me = admin.whoami().await.unwrap();
    assert!(me.user.admin && me.user.uid == 0, "{me:?}");

    let alice = admin
        .add_user(NewUser {
            name: "alice".into(),
            root: Some("/home/alice".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    assert_eq!((alice.user.uid, alice.user.gid), (FIRST_UID, FIRST_UID));
    let reader = admin
        .add_user(NewUser {
            name: "reader".into(),
            read_only: true,
            ..NewUser::default()
        })
        .await
        .unwrap();
    admin.mkdir_all("/home/alice").await.unwrap();
    let home = SetAttr {
        owner: Some(alice.user.uid),
        group: Some(alice.user.gid),
        ..SetAttr::default()
    };
    admin.set_attr("/home/alice", home).await.unwrap();
    admin
        .write("/home/alice/from-admin", b"root's 0644")
        .await
        .unwrap();
    admin
        .write("/home/alice/secret", b"root's 0600")
        .await
        .unwrap();
    let private = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    admin.set_attr("/home/alice/secret", private).await.unwrap();
    let outside = admin
        .write("/other", b"outside alice's subtree")
        .await
        .unwrap();

    let a = client_of(&cluster, &alice, &dir).await;
    let who = a.whoami().await.unwrap();
    assert_eq!(
        (who.user.name.as_str(), who.user.root.as_str()),
        ("alice", "/home/alice")
    );
    // Her own files are hers, and she reads root's world-readable one.
    let mine = a.write("/home/alice/mine", b"alice's data").await.unwrap();
    assert_eq!((mine.owner, mine.group), (FIRST_UID, FIRST_UID));
    assert_eq!(a.read("/home/alice/mine").await.unwrap(), b"alice's data");
    assert_eq!(
        a.read("/home/alice/from-admin").await.unwrap(),
        b"root's 0644"
    );
    denied(
        a.read("/home/alice/secret").await,
        "no read permission on /home/alice/secret",
    );
    denied(a.write("/home/alice/from-admin", b"x").await, "write");
    denied(
        a.stat("/other").await,
        "outside the user's subtree /home/alice",
    );
    denied(a.mkdir("/elsewhere").await, "outside");
    denied(a.remove("/home/alice").await, "root");
    // A guessed file id of a file outside her subtree answers nothing.
    let m = master::connect(cluster.master_addr(), &security_of(&alice, &dir))
        .await
        .unwrap();
    denied(
        m.locate(ctx(), outside.fid, 0, 10).await.unwrap(),
        "not reached through a path",
    );
    denied(
        m.stat_fid(ctx(), FileId(outside.fid.0)).await.unwrap(),
        "not reached",
    );
    // The administrator's calls are not hers.
    denied(
        a.set_replication("/home/alice/mine", 1).await,
        "for administrators",
    );
    denied(a.fsck().await, "for administrators");
    denied(a.users().await, "for administrators");
    let chown = SetAttr {
        owner: Some(0),
        ..SetAttr::default()
    };
    denied(a.set_attr("/home/alice/mine", chown).await, "owner");

    // The read-only user reads what its modes allow and changes nothing.
    let r = client_of(&cluster, &reader, &dir).await;
    assert_eq!(r.read("/other").await.unwrap(), b"outside alice's subtree");
    assert_eq!(r.read("/home/alice/mine").await.unwrap(), b"alice's data");
    denied(r.mkdir("/r").await, "read-only");
    denied(r.write("/r", b"x").await, "read-only");
    denied(r.remove("/other").await, "read-only");

    // Removed: refused from the next call on; replaced: the old certificate is refused.
    admin.remove_user("reader").await.unwrap();
    denied(r.stat("/other").await, "not a user of this cluster");
    let again = admin
        .add_user(NewUser {
            name: "alice".into(),
            root: Some("/home/alice".into()),
            replace: true,
            ..NewUser::default()
        })
        .await
        .unwrap();
    assert_eq!(
        again.user.uid, alice.user.uid,
        "a replaced user keeps its uid"
    );
    denied(a.stat("/home/alice/mine").await, "replaced");
    let a2 = client_of(&cluster, &again, &dir).await;
    assert_eq!(a2.read("/home/alice/mine").await.unwrap(), b"alice's data");
    let names: Vec<String> = admin
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_outlive_a_master_restart_and_bad_records_are_refused() {
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let admin = cluster.client().await;
    let bob = admin
        .add_user(NewUser {
            name: "bob".into(),
            uid: Some(2000),
            groups: vec![7],
            ..NewUser::default()
        })
        .await
        .unwrap();
    let e = admin
        .add_user(NewUser {
            name: "bob".into(),
            ..NewUser::default()
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    let e = admin
        .add_user(NewUser {
            name: "carol".into(),
            uid: Some(2000),
            ..NewUser::default()
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bob"), "{e}");
    assert!(
        admin
            .add_user(NewUser {
                name: "admin".into(),
                ..NewUser::default()
            })
            .await
            .is_err()
    );
    assert!(admin.remove_user("nobody").await.is_err());
    admin.mkdir("/tmp").await.unwrap();
    let sticky = SetAttr {
        mode: Some(0o1777),
        ..SetAttr::default()
    };
    admin.set_attr("/tmp", sticky).await.unwrap();
    admin.write("/tmp/roots", b"r").await.unwrap();
    cluster.restart_master().await;
    let b = client_of(&cluster, &bob, &dir).await;
    let who = b.whoami().await.unwrap();
    assert_eq!(
        (who.user.uid, who.user.gid, who.user.groups.clone()),
        (2000, 2000, vec![7])
    );
    denied(
        b.write("/bobs", b"b").await,
        "no write+search permission on / (mode 0755",
    );
    let made = b.write("/tmp/bobs", b"b").await.unwrap();
    assert_eq!(made.owner, 2000);
    denied(b.remove("/tmp/roots").await, "sticky");
    b.remove("/tmp/bobs").await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_serves_with_the_rights_of_its_configured_user() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let admin = cluster.client().await;
    admin.mkdir("/www").await.unwrap();
    admin
        .write("/www/index.html", b"<h1>hi</h1>")
        .await
        .unwrap();
    admin.write("/www/secret.txt", b"s3cret").await.unwrap();
    admin
        .set_attr(
            "/www/secret.txt",
            SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    let added = admin
        .add_user(NewUser {
            name: "web".into(),
            read_only: true,
            root: Some("/www".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let web = client_of(&cluster, &added, &dir).await;
    let gw = kfs_gateway::http::start(
        web,
        kfs_gateway::http::GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            root: "/www".into(),
            write_token: Some("token".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", gw.local_addr());
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let page = http.get(format!("{base}/index.html")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "<h1>hi</h1>");
    // What the user may not read, and any write (the token only opens the gateway's door):
    // 403, saying why.
    let outside = http.get(format!("{base}/secret.txt")).send().await.unwrap();
    assert_eq!(outside.status(), 403);
    assert!(!outside.text().await.unwrap().contains("s3cret"));
    let upload = http
        .put(format!("{base}/new.html"))
        .bearer_auth("token")
        .body("new")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 403);
    assert!(upload.text().await.unwrap().contains("read-only"));
    assert!(admin.stat("/www/new.html").await.is_err());
    gw.shutdown(std::time::Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confined_users_open_files_carry_on_across_a_master_restart() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let admin = cluster.client().await;
    admin.mkdir("/home").await.unwrap();
    admin.mkdir("/home/dora").await.unwrap();
    let dora = admin
        .add_user(NewUser {
            name: "dora".into(),
            root: Some("/home/dora".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    let mine = SetAttr {
        owner: Some(dora.user.uid),
        group: Some(dora.user.gid),
        ..SetAttr::default()
    };
    admin.set_attr("/home/dora", mine).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = client_of(&cluster, &dora, &dir).await;
    let big = kfs_tests::content(4, 600_000);
    d.write("/home/dora/big", &big).await.unwrap();
    d.write("/home/dora/small", b"small").await.unwrap();
    let reader = d.open("/home/dora/big").await.unwrap();
    let packed = d.open("/home/dora/small").await.unwrap();
    let mut writer = d.open("/home/dora/big").await.unwrap();
    assert_eq!(reader.read_at(0, 10).await.unwrap(), big[..10]);

    // The restarted master has forgotten that dora reached these files by path: the handles
    // show it their paths again, and nothing shows.
    cluster.restart_master().await;
    assert_eq!(
        reader.read_at(500_000, 100).await.unwrap(),
        big[500_000..500_100]
    );
    assert_eq!(packed.read_at(0, 5).await.unwrap(), b"small");
    writer
        .write_at(300_000, b"after the restart")
        .await
        .unwrap();
    writer.sync().await.unwrap();
    writer.close().await.unwrap();
    let back = d.read("/home/dora/big").await.unwrap();
    assert_eq!(&back[300_000..300_017], b"after the restart");
}
