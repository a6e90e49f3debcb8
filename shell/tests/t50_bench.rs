//! `kfs bench`: every workload at a tiny size against a `--local` cluster and against a POSIX
//! directory, checking that the JSON report carries the machine, the version, every parameter
//! and each phase with the operations it was asked for; then `kfs bench-report` over them.

use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn bench(args: &[&str], local_data: &Path) -> Value {
    let out = Command::cargo_bin("kfs")
        .unwrap()
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg("--local-data")
        .arg(local_data)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kfs bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kfs bench {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The phases of a report as (name, ops, bytes).
fn phases(report: &Value) -> Vec<(String, u64, u64)> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|p| {
            let ops = p["ops"].as_u64().unwrap();
            let seconds = p["seconds"].as_f64().unwrap();
            assert!(seconds > 0.0, "{p}");
            if ops > 0 {
                assert!(p["ops_per_sec"].as_f64().unwrap() > 0.0, "{p}");
                let lat = &p["latency_us"];
                let (p50, p99, max) = (
                    lat["p50"].as_u64().unwrap(),
                    lat["p99"].as_u64().unwrap(),
                    lat["max"].as_u64().unwrap(),
                );
                assert!(p50 <= p99 && p99 <= max && max > 0, "{p}");
            }
            (
                p["phase"].as_str().unwrap().to_string(),
                ops,
                p["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn check_common(report: &Value, workload: &str, target: &str) {
    assert_eq!(report["tool"], "kfs bench");
    assert_eq!(report["workload"], workload);
    assert!(
        report["target"].as_str().unwrap().starts_with(target),
        "{}",
        report["target"]
    );
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(!report["machine"]["kernel"].as_str().unwrap().is_empty());
    assert!(!report["commit"].as_str().unwrap().is_empty());
    assert!(!report["version"].as_str().unwrap().is_empty());
    assert!(report["started"].as_str().unwrap().contains('T'));
    for key in [
        "clients",
        "files",
        "size",
        "block",
        "file_size",
        "reads",
        "replication",
    ] {
        assert!(report["settings"][key].is_u64(), "settings.{key}: {report}");
    }
}

#[test]
fn every_workload_runs_on_kfs_and_posix_and_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let posix = dir.path().join("posix");
    std::fs::create_dir(&posix).unwrap();
    let posix = posix.to_str().unwrap();
    let mut saved = Vec::new();
    for (target, target_args) in [
        ("kfs --local", vec!["--local"]),
        ("posix", vec!["--posix", posix]),
    ] {
        let run = |workload: &str, extra: &[&str]| {
            let mut args = vec![workload];
            args.extend(&target_args);
            args.extend(extra);
            let report = bench(&args, dir.path());
            check_common(&report, workload, target);
            report
        };

        let meta = run("meta", &["--files", "1500", "--clients", "8"]);
        let p = phases(&meta);
        let names: Vec<&str> = p.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["mkdir", "create", "stat", "readdir", "rename", "remove"]
        );
        assert_eq!(p[0].1, 2, "1500 files make 2 directories of at most 1000");
        for (name, ops, _) in &p[1..] {
            let want = if name == "readdir" { 2 } else { 1500 };
            assert_eq!(*ops, want, "{name}");
        }
        let master_bin = assert_cmd::cargo::cargo_bin("kfs").with_file_name("kfs-master");
        if target == "kfs --local" && master_bin.exists() {
            // The master ran as its own process (its description says so), so the probe ran.
            assert!(
                meta["target"].as_str().unwrap().contains("master process"),
                "{}",
                meta["target"]
            );
            assert!(meta["master_rss_bytes_per_file"].is_f64(), "{meta}");
        } else {
            assert!(meta["master_rss_bytes_per_file"].is_null());
        }

        let seq = run(
            "seq",
            &[
                "--files",
                "3",
                "--size",
                "3MiB",
                "--block",
                "256KiB",
                "--replication",
                "2",
            ],
        );
        assert_eq!(
            phases(&seq),
            [
                ("write".to_string(), 3, 3 << 20),
                ("read".to_string(), 3, 3 << 20)
            ]
        );
        assert_eq!(seq["settings"]["replication"], 2);

        let small = run(
            "small",
            &[
                "--files",
                "300",
                "--reads",
                "500",
                "--file-size",
                "6KiB",
                "--clients",
                "8",
            ],
        );
        assert_eq!(
            phases(&small),
            [
                ("mkdir".to_string(), 1, 0),
                ("write".to_string(), 300, 300 * 6144),
                ("read".to_string(), 500, 500 * 6144)
            ]
        );

        let mixed = run(
            "mixed",
            &[
                "--files",
                "50",
                "--file-size",
                "4KiB",
                "--duration",
                "1",
                "--clients",
                "4",
            ],
        );
        let p = phases(&mixed);
        let names: Vec<&str> = p.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "setup mkdir",
                "setup write",
                "read",
                "write",
                "stat",
                "list"
            ]
        );
        assert!(p[2..].iter().map(|(_, ops, _)| ops).sum::<u64>() > 0);
        for report in [meta, seq, small, mixed] {
            let path = dir.path().join(format!("r{}.json", saved.len()));
            std::fs::write(&path, report.to_string()).unwrap();
            saved.push(path);
        }
    }
    // Nothing left behind in the POSIX directory.
    assert_eq!(std::fs::read_dir(posix).unwrap().count(), 0);

    let out = Command::cargo_bin("kfs")
        .unwrap()
        .arg("bench-report")
        .args(&saved)
        .output()
        .unwrap();
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "### `meta`",
        "### `seq`",
        "### `small`",
        "### `mixed`",
        "| kfs --local",
        "| posix | create |",
    ] {
        assert!(md.contains(needle), "{needle:?} missing from:\n{md}");
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = Command::cargo_bin("kfs")
        .unwrap()
        .args(["bench", "meta", "--posix", "/nonexistent/kfs-bench"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/kfs-bench") && err.contains("not a directory"),
        "{err}"
    );
    let out = Command::cargo_bin("kfs")
        .unwrap()
        .args([
            "bench",
            "mixed",
            "--posix",
            "/tmp",
            "--mix",
            "read=1,delete=2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kind \"delete\""));
    // Replication 3 on one chunkserver is refused, not measured as something else.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("kfs")
        .unwrap()
        .args([
            "bench",
            "small",
            "--local",
            "--local-chunkservers",
            "1",
            "--files",
            "10",
        ])
        .arg("--local-data")
        .arg(dir.path())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("replication 3 needs 3 live chunkservers; the master lists 1"),
        "{err}"
    );
}
