//! The FUSE mount (`kfs-fuse`), mounted in this process on a test cluster and driven through
//! the kernel with `std::fs` and real programs: names, data, attributes, xattrs, open files
//! unlinked, what the client library sees, and a tree copied in and compared.
//!
//! Needs `/dev/fuse` and root (CI runs as root); a machine without them fails here, loudly.

use kfs_tests::content;
use kfs_tests::mounts::{MountedCluster as Mount, blocking};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posix_calls_through_the_mount() {
    let m = Mount::start().await;
    let root = m.mounted.mountpoint().to_path_buf();
    let data = content(7, 3 << 20 | 12_345);
    let expect = data.clone();
    blocking(move || {
        let dir = root.join("photos");
        std::fs::create_dir(&dir).unwrap();
        assert!(std::fs::metadata(&dir).unwrap().is_dir());
        assert_eq!(
            std::fs::create_dir(&dir).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        // A large file across chunks, written in odd pieces, read back whole and at offsets.
        let big = dir.join("big.bin");
        let mut f = std::fs::File::create(&big).unwrap();
        for piece in expect.chunks(100_003) {
            f.write_all(piece).unwrap();
        }
        f.sync_all().unwrap();
        drop(f);
        assert_eq!(std::fs::metadata(&big).unwrap().len(), expect.len() as u64);
        assert_eq!(std::fs::read(&big).unwrap(), expect);
        let mut f = std::fs::File::open(&big).unwrap();
        f.seek(SeekFrom::Start(1_500_000)).unwrap();
        let mut buf = vec![0; 70_000];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(buf, expect[1_500_000..1_570_000]);

        // A small file: O_EXCL, O_APPEND, a rewrite in place, truncation both ways.
        let small = dir.join("a.txt");
        std::fs::write(&small, b"hello").unwrap();
        let exists = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&small)
            .unwrap_err();
        assert_eq!(exists.kind(), std::io::ErrorKind::AlreadyExists);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&small)
            .unwrap();
        f.write_all(b", world").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&small).unwrap(), b"hello, world");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&small)
            .unwrap();
        f.write_all(b"J").unwrap();
        let mut text = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "Jello, world");
        f.set_len(5).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&small).unwrap(), b"Jello");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&small)
            .unwrap()
            .set_len(8)
            .unwrap();
        assert_eq!(std::fs::read(&small).unwrap(), b"Jello\0\0\0");
        std::fs::write(&small, b"new").unwrap(); // O_TRUNC
        assert_eq!(std::fs::read(&small).unwrap(), b"new");

        // Attributes.
        std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(std::fs::metadata(&small).unwrap().mode() & 0o7777, 0o600);
        std::os::unix::fs::chown(&small, Some(1234), Some(5678)).unwrap();
        let meta = std::fs::metadata(&small).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::options()
            .write(true)
            .open(&small)
            .unwrap()
            .set_modified(when)
            .unwrap();
        assert_eq!(std::fs::metadata(&small).unwrap().modified().unwrap(), when);
        let exec = dir.join("run.sh");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o751)
            .open(&exec)
            .unwrap();
        assert_eq!(std::fs::metadata(&exec).unwrap().mode() & 0o777, 0o751);

        // Names: a rename across directories, over a file, listing, removal.
        std::fs::create_dir(root.join("other")).unwrap();
        std::fs::rename(&small, root.join("other/b.txt")).unwrap();
        assert!(!small.exists());
        assert_eq!(std::fs::read(root.join("other/b.txt")).unwrap(), b"new");
        std::fs::write(root.join("other/c.txt"), b"c").unwrap();
        std::fs::rename(root.join("other/c.txt"), root.join("other/b.txt")).unwrap();
        assert_eq!(std::fs::read(root.join("other/b.txt")).unwrap(), b"c");
        std::fs::rename(root.join("other"), dir.join("moved")).unwrap();
        assert_eq!(std::fs::read(dir.join("moved/b.txt")).unwrap(), b"c");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["big.bin", "moved", "run.sh"]);
        assert_eq!(
            std::fs::remove_dir(dir.join("moved")).unwrap_err().kind(),
            std::io::ErrorKind::DirectoryNotEmpty
        );
        std::fs::remove_file(dir.join("moved/b.txt")).unwrap();
        std::fs::remove_dir(dir.join("moved")).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("moved")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            std::fs::read(dir.join(format!("{}.x", "n".repeat(300))))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENAMETOOLONG)
        );
    })
    .await;

    // What the mount wrote, the client library reads; and the other way round.
    let client = m.cluster.client().await;
    assert_eq!(
        client.stat("/photos/big.bin").await.unwrap().size,
        data.len() as u64
    );
    let mut f = client.create("/photos/from-client.txt").await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut f, b"from the library")
        .await
        .unwrap();
    f.close().await.unwrap();
    let at = m.at("photos/from-client.txt");
    let text = blocking(move || std::fs::read_to_string(at).unwrap()).await;
    assert_eq!(text, "from the library");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xattrs_are_the_ones_kfs_xattr_shows() {
    use rustix::fs::{XattrFlags, getxattr, listxattr, removexattr, setxattr};
    let m = Mount::start().await;
    let client = m.cluster.client().await;
    client.mkdir("/x").await.unwrap();
    let f = client.create("/x/f").await.unwrap();
    f.close().await.unwrap();
    client.set_xattr("/x/f", "color", b"red").await.unwrap();
    let at = m.at("x/f");
    blocking(move || {
        let mut buf = vec![0u8; 256];
        let n = getxattr(&at, "user.color", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"red");
        setxattr(&at, "user.size", b"large", XattrFlags::empty()).unwrap();
        assert_eq!(
            setxattr(&at, "user.size", b"x", XattrFlags::CREATE).unwrap_err(),
            rustix::io::Errno::EXIST
        );
        assert_eq!(
            setxattr(&at, "user.none", b"x", XattrFlags::REPLACE).unwrap_err(),
            rustix::io::Errno::NODATA
        );
        assert_eq!(
            getxattr(&at, "user.none", &mut buf).unwrap_err(),
            rustix::io::Errno::NODATA
        );
        assert_eq!(
            getxattr(&at, "user.color", &mut [0u8; 1][..]).unwrap_err(),
            rustix::io::Errno::RANGE
        );
        assert_eq!(
            setxattr(&at, "security.selinux", b"x", XattrFlags::empty()).unwrap_err(),
            rustix::io::Errno::OPNOTSUPP
        );
        let mut names = vec![0u8; 256];
        let n = listxattr(&at, &mut names).unwrap();
        let mut listed: Vec<&[u8]> = names[..n]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        listed.sort();
        assert_eq!(listed, [&b"user.color"[..], b"user.size"]);
        removexattr(&at, "user.color").unwrap();
    })
    .await;
    assert_eq!(client.get_xattr("/x/f", "size").await.unwrap(), b"large");
    assert_eq!(client.list_xattrs("/x/f").await.unwrap(), ["size"]);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unlinked_file_that_is_still_open_keeps_working() {
    let m = Mount::start().await;
    let dir = m.at("");
    blocking(move || {
        let path = dir.join("tmp.db");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(b"before unlink").unwrap();
        f.flush().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "hidden names are not listed"
        );
        f.write_all(b", after").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "before unlink, after");
        assert_eq!(
            f.metadata().unwrap().nlink(),
            0,
            "an unlinked file has no links"
        );

        // A file a rename replaces keeps working for whoever has it open (`mv tmp live`).
        let live = dir.join("live");
        std::fs::write(&live, b"old version").unwrap();
        let mut reader = std::fs::File::open(&live).unwrap();
        std::fs::write(dir.join("tmp"), b"new version").unwrap();
        std::fs::rename(dir.join("tmp"), &live).unwrap();
        let mut old = String::new();
        reader.read_to_string(&mut old).unwrap();
        assert_eq!(old, "old version");
        assert_eq!(std::fs::read(&live).unwrap(), b"new version");
        drop(reader);
        // A directory cannot replace an open file.
        let mut holder = std::fs::File::open(&live).unwrap();
        std::fs::create_dir(dir.join("d")).unwrap();
        let refused = std::fs::rename(dir.join("d"), &live).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ENOTDIR));
        let mut text = String::new();
        holder.read_to_string(&mut text).unwrap();
        assert_eq!(text, "new version");
        drop(holder);
        std::fs::remove_dir(dir.join("d")).unwrap();
        std::fs::remove_file(&live).unwrap();

        // Closed, then unlinked at once: the kernel's release of the file races the unlink.
        for i in 0..50 {
            let path = dir.join(format!("race-{i}"));
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(b"x").unwrap();
            drop(f);
            std::fs::remove_file(&path).unwrap();
        }
    })
    .await;
    let client = m.cluster.client().await;
    kfs_tests::wait_until(
        "every unlinked file (and no hidden name) to be gone after its last close",
        std::time::Duration::from_secs(10),
        || {
            let client = client.clone();
            async move { client.list_all("/").await.unwrap().is_empty() }
        },
    )
    .await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_tree_copied_in_compares_equal() {
    let m = Mount::start().await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("common");
    let into = m.at("tree");
    blocking(move || {
        let status = Command::new("cp")
            .arg("-r")
            .arg(&source)
            .arg(&into)
            .status()
            .unwrap();
        assert!(status.success(), "cp -r into the mount");
        let diff = Command::new("diff")
            .arg("-r")
            .arg(&source)
            .arg(&into)
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "diff -r: {}",
            String::from_utf8_lossy(&diff.stdout)
        );
        let tar = into.parent().unwrap().join("tree.tar");
        let status = Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&into)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success(), "tar -c on the mount");
        let out = into.parent().unwrap().join("untarred");
        std::fs::create_dir(&out).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "tar -x on the mount");
        let diff = Command::new("diff")
            .arg("-r")
            .arg(&source)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "diff -r after tar: {}",
            String::from_utf8_lossy(&diff.stdout)
        );
    })
    .await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn symbolic_links_fifos_and_devices_through_the_mount() {
    use std::os::unix::fs::FileTypeExt;
    let m = Mount::start().await;
    let root = m.mounted.mountpoint().to_path_buf();
    blocking(move || {
        let dir = root.join("s");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("real.txt"), b"through the link").unwrap();
        // A relative link, followed by the kernel.
        let link = dir.join("link");
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real.txt"));
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_symlink());
        assert_eq!(meta.len(), "real.txt".len() as u64);
        assert_eq!(std::fs::read(&link).unwrap(), b"through the link");
        assert!(std::fs::metadata(&link).unwrap().is_file());
        assert_eq!(
            std::os::unix::fs::symlink("x", &link).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        // A dangling link, and a link to a directory walked through.
        std::os::unix::fs::symlink("/nowhere/at/all", dir.join("dangling")).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("dangling")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        std::os::unix::fs::symlink(".", dir.join("here")).unwrap();
        assert_eq!(
            std::fs::read(dir.join("here/here/real.txt")).unwrap(),
            b"through the link"
        );

        // A FIFO: data passes through the kernel, never KFS.
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
        let meta = std::fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.mode() & 0o7777, 0o640);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(&fifo, b"piped").unwrap())
        };
        assert_eq!(std::fs::read(&fifo).unwrap(), b"piped");
        writer.join().unwrap();

        // A character device like /dev/null (1, 3), and a socket.
        let dev = dir.join("null");
        let c = std::ffi::CString::new(dev.as_os_str().as_encoded_bytes()).unwrap();
        let rdev = libc::makedev(1, 3);
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, rdev) },
            0
        );
        let meta = std::fs::symlink_metadata(&dev).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!((meta.rdev(), meta.len()), (rdev, 0));
        let sock = dir.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(
            std::fs::symlink_metadata(&sock)
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(listener);

        // Renamed and removed like files; a directory is not replaced by one.
        std::fs::rename(&link, dir.join("moved")).unwrap();
        assert_eq!(
            std::fs::read(dir.join("moved")).unwrap(),
            b"through the link"
        );
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert!(std::fs::rename(dir.join("moved"), dir.join("sub")).is_err());
        std::fs::remove_file(dir.join("dangling")).unwrap();
        std::fs::remove_file(&sock).unwrap();
    })
    .await;

    // The client library sees the same kinds and target.
    let client = m.cluster.client().await;
    assert_eq!(client.readlink("/s/moved").await.unwrap(), "real.txt");
    let kinds: Vec<(String, kfs_client::FileKind)> = client
        .list_all("/s")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    use kfs_client::FileKind::*;
    assert_eq!(
        kinds,
        [
            ("fifo".to_string(), Fifo),
            ("here".to_string(), Symlink),
            ("moved".to_string(), Symlink),
            ("null".to_string(), CharDevice),
            ("real.txt".to_string(), File),
            ("sub".to_string(), Dir),
        ]
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_links_share_one_file_and_count_its_names() {
    let m = Mount::start().await;
    let root = m.mounted.mountpoint().to_path_buf();
    blocking(move || {
        std::fs::create_dir_all(root.join("h/sub")).unwrap();
        let a = root.join("h/a");
        std::fs::write(&a, b"one file").unwrap();
        let b = root.join("h/sub/b");
        std::fs::hard_link(&a, &b).unwrap();
        let (ma, mb) = (
            std::fs::metadata(&a).unwrap(),
            std::fs::metadata(&b).unwrap(),
        );
        assert_eq!((ma.ino(), ma.nlink()), (mb.ino(), 2));
        // A directory counts its subdirectories.
        assert_eq!(std::fs::metadata(root.join("h")).unwrap().nlink(), 3);
        // A write through one name is read through the other.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&b)
            .unwrap()
            .write_all(b", two names")
            .unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"one file, two names");
        assert_eq!(
            std::fs::hard_link(&a, &b).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        // An open file unlinked by one name keeps working, and the other name keeps it.
        let mut open = std::fs::File::open(&a).unwrap();
        std::fs::remove_file(&a).unwrap();
        assert_eq!(std::fs::metadata(&b).unwrap().nlink(), 1);
        let mut text = String::new();
        open.read_to_string(&mut text).unwrap();
        assert_eq!(text, "one file, two names");
        drop(open);
        assert_eq!(std::fs::read(&b).unwrap(), b"one file, two names");
        // Renamed onto another of its names: nothing changes (POSIX).
        let c = root.join("h/c");
        std::fs::hard_link(&b, &c).unwrap();
        std::fs::rename(&b, &c).unwrap();
        assert!(b.exists() && c.exists());
        std::fs::remove_dir_all(root.join("h/sub")).unwrap();
        assert_eq!(std::fs::metadata(&c).unwrap().nlink(), 1);
        assert_eq!(std::fs::metadata(root.join("h")).unwrap().nlink(), 2);
    })
    .await;
    let client = m.cluster.client().await;
    assert_eq!(client.stat("/h/c").await.unwrap().nlink, 1);
    m.stop().await;
}
