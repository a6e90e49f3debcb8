//! The workloads. Each lays files out the same way on every target: at most 1,000 entries per
//! directory (`d<k>/…`, see [`Layout`]), names derived from the operation's index, and "random"
//! orders from a fixed permutation, so two runs (and a KFS run and a POSIX run) do exactly the
//! same operations.

use super::stats::{Op, PhaseResult, run_phase, run_timed};
use super::target::Target;
use super::{Settings, Workload};
use std::sync::Arc;
use std::time::Duration;

/// Entries per directory.
pub const FANOUT: u64 = 1000;

/// Which directory file `i` of `files` is in: `d<k>`, `k < dirs`, each with at most [`FANOUT`]
/// files. Shared (the default): consecutive files fill one directory, so the operations in
/// flight at once change the same directory (mdtest's shared-directory case, where a kernel
/// mount serializes them on the directory's lock). Spread (`--spread`): file `i` is in
/// directory `i mod dirs`, so they change different ones (as mdtest `-u`, or a photo site's
/// hashed directories).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub dirs: u64,
    pub spread: bool,
}

impl Layout {
    pub fn new(files: u64, spread: bool) -> Layout {
        Layout {
            dirs: files.div_ceil(FANOUT).max(1),
            spread,
        }
    }

    pub fn dir_of(&self, i: u64) -> String {
        match self.spread {
            false => format!("d{}", i / FANOUT),
            true => format!("d{}", i % self.dirs),
        }
    }
}

/// A fixed random permutation of `0..n` (Fisher-Yates over a xorshift sequence with a constant
/// seed): every run, on every target, visits the files in the same random order.
#[derive(Clone)]
pub struct Shuffle {
    order: Arc<Vec<u64>>,
}

impl Shuffle {
    pub fn new(n: u64) -> Shuffle {
        let mut order: Vec<u64> = (0..n.max(1)).collect();
        let mut x = 0x853c_49e6_748f_ea9bu64;
        for i in (1..order.len()).rev() {
            order.swap(i, (xorshift(&mut x) % (i as u64 + 1)) as usize);
        }
        Shuffle {
            order: Arc::new(order),
        }
    }

    /// The `i`-th element of the permutation (`i` wraps around past `n`).
    pub fn get(&self, i: u64) -> u64 {
        self.order[(i % self.order.len() as u64) as usize]
    }
}

/// Bytes that differ from block to block: `len` bytes of a xorshift sequence.
pub fn pattern(len: usize) -> Arc<Vec<u8>> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    Arc::new((0..len).map(|_| xorshift(&mut x) as u8).collect())
}

/// The next number of a xorshift64 sequence (`x` must not be 0): fast, fixed, good enough to
/// pick files and operations, and the same on every run.
pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The size of small file `i`: `size` exactly, or spread over `size..=size_max`.
fn small_size(s: &Settings, i: u64) -> u64 {
    match s.file_size_max {
        Some(max) if max > s.file_size => {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
            s.file_size + h % (max - s.file_size + 1)
        }
        _ => s.file_size,
    }
}

fn op<F, Fut>(f: F) -> Op
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    Arc::new(move |i| Box::pin(f(i)))
}

/// Makes the directories `d0 .. d<n-1>` (not measured).
async fn make_dirs(t: &Target, n: u64, clients: usize) -> anyhow::Result<PhaseResult> {
    let t = t.clone();
    run_phase(
        "mkdir",
        n,
        clients,
        op(move |i| {
            let t = t.clone();
            async move { t.mkdir(&format!("d{i}")).await.map(|()| 0) }
        }),
    )
    .await
}

/// `meta`: mkdir, create, stat, readdir, rename, remove over `files` empty files.
/// `rss_probe` is called once all files exist (the master-memory probe of `--local`).
pub async fn meta(
    t: &Target,
    s: &Settings,
    rss_probe: &mut dyn FnMut(),
) -> anyhow::Result<Vec<PhaseResult>> {
    let layout = s.layout;
    let files = s.files;
    let mut results = vec![make_dirs(t, s.layout.dirs, s.clients).await?];
    let tt = t.clone();
    results.push(
        run_phase(
            "create",
            files,
            s.clients,
            op(move |i| {
                let t = tt.clone();
                async move {
                    t.create_empty(&format!("{}/f{i}", layout.dir_of(i)))
                        .await
                        .map(|()| 0)
                }
            }),
        )
        .await?,
    );
    rss_probe();
    let shuffle = Shuffle::new(files);
    let tt = t.clone();
    results.push(
        run_phase(
            "stat",
            files,
            s.clients,
            op(move |i| {
                let t = tt.clone();
                let f = shuffle.get(i);
                async move {
                    t.stat(&format!("{}/f{f}", layout.dir_of(f)))
                        .await
                        .map(|_| 0)
                }
            }),
        )
        .await?,
    );
    let tt = t.clone();
    let mut listed = run_phase(
        "readdir",
        s.layout.dirs,
        s.clients,
        op(move |i| {
            let t = tt.clone();
            // Bytes stand for entries here; reported as entries below.
            async move { t.list(&format!("d{i}")).await }
        }),
    )
    .await?;
    anyhow::ensure!(
        listed.bytes == files,
        "readdir found {} entries where {files} files were created",
        listed.bytes
    );
    listed.bytes = 0;
    listed.mb_per_sec = 0.0;
    results.push(listed);
    let tt = t.clone();
    results.push(
        run_phase(
            "rename",
            files,
            s.clients,
            op(move |i| {
                let t = tt.clone();
                async move {
                    let d = layout.dir_of(i);
                    t.rename(&format!("{d}/f{i}"), &format!("{d}/g{i}"))
                        .await
                        .map(|()| 0)
                }
            }),
        )
        .await?,
    );
    let tt = t.clone();
    results.push(
        run_phase(
            "remove",
            files,
            s.clients,
            op(move |i| {
                let t = tt.clone();
                async move {
                    t.remove(&format!("{}/g{i}", layout.dir_of(i)))
                        .await
                        .map(|()| 0)
                }
            }),
        )
        .await?,
    );
    Ok(results)
}

/// `seq`: `size` bytes over `files` files, written in `block` calls and synced, in parallel,
/// then read back in parallel.
pub async fn seq(t: &Target, s: &Settings) -> anyhow::Result<Vec<PhaseResult>> {
    // File i holds size / files bytes, the first size % files files one more: `size` in all.
    let (files, size) = (s.files.max(1), s.size);
    let size_of = move |i: u64| size / files + u64::from(i < size % files);
    let data = pattern(s.block + 65_536);
    let (block, replication) = (s.block, s.replication);
    let tt = t.clone();
    let write = run_phase(
        "write",
        s.files,
        s.clients,
        op(move |i| {
            let (t, data) = (tt.clone(), data.clone());
            async move {
                t.write_file(&format!("s{i}"), size_of(i), block, replication, &data)
                    .await
            }
        }),
    )
    .await?;
    let tt = t.clone();
    let read = run_phase(
        "read",
        s.files,
        s.clients,
        op(move |i| {
            let t = tt.clone();
            async move {
                let n = t.read_file(&format!("s{i}"), block).await?;
                let want = size_of(i);
                anyhow::ensure!(n == want, "s{i}: read {n} bytes of {want}");
                Ok(n)
            }
        }),
    )
    .await?;
    Ok(vec![write, read])
}

/// `small`: `files` small files written (each synced) by `clients` writers, then `reads`
/// random ones read by `clients` readers.
pub async fn small(t: &Target, s: &Settings) -> anyhow::Result<Vec<PhaseResult>> {
    let layout = s.layout;
    let mut results = vec![make_dirs(t, s.layout.dirs, s.clients).await?];
    let max = s.file_size_max.unwrap_or(s.file_size).max(s.file_size) as usize;
    let data = pattern(max + 65_536);
    let settings = Arc::new(s.clone());
    let tt = t.clone();
    let st = settings.clone();
    results.push(
        run_phase(
            "write",
            s.files,
            s.clients,
            op(move |i| {
                let (t, data, s) = (tt.clone(), data.clone(), st.clone());
                async move {
                    let size = small_size(&s, i);
                    t.write_file(
                        &format!("{}/p{i}", layout.dir_of(i)),
                        size,
                        size.max(1) as usize,
                        s.replication,
                        &data,
                    )
                    .await
                }
            }),
        )
        .await?,
    );
    let shuffle = Shuffle::new(s.files);
    let tt = t.clone();
    let st = settings.clone();
    results.push(
        run_phase(
            "read",
            s.reads,
            s.clients,
            op(move |i| {
                let (t, s) = (tt.clone(), st.clone());
                let f = shuffle.get(i);
                async move {
                    let want = small_size(&s, f);
                    let n = t
                        .read_file(&format!("{}/p{f}", layout.dir_of(f)), want.max(1) as usize)
                        .await?;
                    anyhow::ensure!(n == want, "p{f}: read {n} bytes of {want}");
                    Ok(n)
                }
            }),
        )
        .await?,
    );
    Ok(results)
}

/// `mixed`: `files` files of `file_size` bytes first (not measured), then for `duration`
/// `clients` clients each pick, per operation: read a random file, write a new one (synced),
/// stat a random file or list a directory, in the proportions of `mix`.
pub async fn mixed(t: &Target, s: &Settings) -> anyhow::Result<Vec<PhaseResult>> {
    let layout = s.layout;
    let setup = Settings {
        reads: 0,
        ..s.clone()
    };
    let mut small_setup = small(t, &setup).await?;
    small_setup.truncate(2);
    for r in &mut small_setup {
        r.phase = format!("setup {}", r.phase);
    }
    t.mkdir("w").await?;
    let data = pattern(s.file_size as usize + 65_536);
    let (files, size, replication) = (s.files, s.file_size, s.replication);
    let shuffle = Shuffle::new(files);
    let stat_shuffle = shuffle.clone();
    let tt = t.clone();
    let read = op(move |i| {
        let t = tt.clone();
        let f = shuffle.get(i);
        async move {
            t.read_file(&format!("{}/p{f}", layout.dir_of(f)), size.max(1) as usize)
                .await
        }
    });
    let tt = t.clone();
    let write = op(move |i| {
        let (t, data) = (tt.clone(), data.clone());
        async move {
            t.write_file(
                &format!("w/n{i}"),
                size,
                size.max(1) as usize,
                replication,
                &data,
            )
            .await
        }
    });
    let tt = t.clone();
    let stat = op(move |i| {
        let t = tt.clone();
        let f = stat_shuffle.get(i);
        async move {
            t.stat(&format!("{}/p{f}", layout.dir_of(f)))
                .await
                .map(|_| 0)
        }
    });
    let tt = t.clone();
    let dirs = s.layout.dirs;
    let list = op(move |i| {
        let t = tt.clone();
        async move { t.list(&format!("d{}", i % dirs)).await.map(|_| 0) }
    });
    let mix = s.mix;
    let total = mix.iter().sum::<u32>().max(1) as u64;
    let pick = Arc::new(move |r: u64| {
        let mut x = r % total;
        for (k, share) in mix.iter().enumerate() {
            if x < *share as u64 {
                return k;
            }
            x -= *share as u64;
        }
        0
    });
    let mut results = small_setup;
    results.extend(
        run_timed(
            &["read", "write", "stat", "list"],
            s.clients,
            Duration::from_secs_f64(s.duration_secs),
            pick,
            vec![read, write, stat, list],
        )
        .await?,
    );
    Ok(results)
}

/// Runs `workload` (in the benchmark's directory, which exists and is empty).
pub async fn run(
    workload: Workload,
    t: &Target,
    s: &Settings,
    rss_probe: &mut dyn FnMut(),
) -> anyhow::Result<Vec<PhaseResult>> {
    match workload {
        Workload::Meta => meta(t, s, rss_probe).await,
        Workload::Seq => seq(t, s).await,
        Workload::Small => small(t, s).await,
        Workload::Mixed => mixed(t, s).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_in_no_simple_order() {
        for n in [1u64, 2, 7, 1000, 1001, 100_000] {
            let s = Shuffle::new(n);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let j = s.get(i) as usize;
                assert!(!seen[j], "n={n}: {j} twice");
                seen[j] = true;
            }
        }
        // Consecutive visits land in different directories of 1,000 most of the time.
        let s = Shuffle::new(100_000);
        let same_dir = (0..10_000)
            .filter(|&i| s.get(i) / FANOUT == s.get(i + 1) / FANOUT)
            .count();
        assert!(
            same_dir < 500,
            "{same_dir} of 10,000 steps stay in one directory"
        );
    }

    #[test]
    fn layouts_keep_a_thousand_files_a_directory_and_spread_puts_neighbours_apart() {
        for files in [1u64, 999, 1000, 1001, 64_000, 100_000] {
            for spread in [false, true] {
                let layout = Layout::new(files, spread);
                let mut per_dir = std::collections::HashMap::<String, u64>::new();
                for i in 0..files {
                    *per_dir.entry(layout.dir_of(i)).or_default() += 1;
                }
                assert_eq!(per_dir.len() as u64, layout.dirs, "{files} {spread}");
                assert!(per_dir.values().all(|&n| n <= FANOUT), "{files} {spread}");
            }
        }
        let shared = Layout::new(100_000, false);
        let spread = Layout::new(100_000, true);
        assert_eq!(shared.dir_of(0), shared.dir_of(63));
        let in_flight: std::collections::HashSet<String> =
            (0..64).map(|i| spread.dir_of(i)).collect();
        assert_eq!(in_flight.len(), 64, "64 files in flight, in 64 directories");
    }
}
