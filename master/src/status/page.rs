//! [`render_html`]: the status page, one self-contained HTML document (inline CSS, no scripts,
//! no external assets) that reloads itself every 5 s, so it works offline and in any browser.
//!
//! It only formats a [`Status`]; text that comes from outside (addresses, server ids, the
//! version) goes through `esc`. The verdict line puts missing chunks above safe mode above
//! degraded (under-replicated, a dead server, a corrupt replica) above healthy. The browser test
//! finds the verdict by its id and the servers by their rows' classes (`tr.server.alive`). The
//! chunkserver, data dir and gateway tables are drawn by `page_servers.rs`.

use super::Status;
use std::fmt::Write as _;

/// Escapes text for HTML.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

fn count_or_dash(n: Option<u64>) -> String {
    n.map_or_else(|| "–".to_string(), |n| n.to_string())
}

/// The status page: one HTML document, no scripts, no external assets.
pub fn render_html(s: &Status) -> String {
    let mut h = String::new();
    let problem = s.replication.missing.unwrap_or(0) > 0;
    let degraded = s.replication.under_replicated.unwrap_or(0) > 0
        || s.summary.servers_dead > 0
        || s.replication.corrupt_replicas > 0;
    let under = s.replication.under_replicated.unwrap_or(0);
    let short = s.replication.short_of_servers.unwrap_or(0);
    let waiting = s.replication.waiting.unwrap_or(0);
    let degraded_text;
    let verdict = if problem {
        ("bad", "MISSING CHUNKS: some data cannot be read")
    } else if s.replication.safe_mode {
        ("warn", "safe mode: waiting for chunkservers to report")
    } else if short > 0 {
        // Repair cannot happen: say what is wrong, not "repairing".
        degraded_text = format!(
            "degraded: {short} chunks under-replicated and too few chunkservers alive ({}) to \
             repair them: start or add chunkservers",
            s.summary.servers_alive
        );
        ("bad", degraded_text.as_str())
    } else if under > 0 && waiting == under {
        (
            "warn",
            "degraded: under-replicated chunks wait for their write leases to run out, then repair",
        )
    } else if degraded {
        ("warn", "degraded: repairing")
    } else {
        ("ok", "healthy")
    };
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>KFS master {master}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; }} h2 {{ font-size: 1.1em; margin: 1.4em 0 .4em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: right; }}
th {{ background: #f4f4f4; }} td:first-child, th:first-child {{ text-align: left; }}
.ok {{ color: #186a1e; }} .warn {{ color: #9a6700; }} .bad {{ color: #b00020; font-weight: bold; }}
tr.dead td, tr.failed td, tr.silent td {{ color: #b00020; }} tr.draining td, tr.drained td {{ color: #9a6700; }}
.verdict {{ font-size: 1.2em; }} .muted {{ color: #777; }}
.bar {{ display: inline-block; width: 8em; height: .8em; background: #eee; vertical-align: middle; }}
.bar span {{ display: block; height: 100%; background: #2a6; }} .bar.full span {{ background: #b00020; }}
.graphs {{ display: flex; flex-wrap: wrap; gap: 1em; }} figure {{ margin: 0; }}
figcaption {{ font-size: .9em; color: #555; }}
</style></head><body>
<h1>KFS master {master}</h1>
<p class="muted">version {version}, up {uptime}s; this page reloads every 5 s; <a href="status.json">JSON</a>, <a href="metrics">metrics</a></p>
<p class="verdict {vclass}" id="verdict">{vtext}</p>
<h2>Cluster</h2>
<table id="summary">
<tr><th>files</th><td id="files">{files}</td></tr>
<tr><th>directories</th><td id="dirs">{dirs}</td></tr>
<tr><th>chunks</th><td id="chunks">{chunks}</td></tr>
<tr><th>bytes in files</th><td>{bytes}</td></tr>
<tr><th>capacity</th><td>{capacity}</td></tr>
<tr><th>used (all replicas)</th><td>{used}</td></tr>
<tr><th>available</th><td>{available}</td></tr>
<tr><th>chunkservers</th><td id="servers-summary">{alive} alive, {dead} dead, {draining} draining</td></tr>
<tr><th>files open for write</th><td id="open-files">{open_writing} being written, {open_gone} with their writer gone (<code>kfs fsck --open-files</code>); {leases} write leases held</td></tr>
</table>
<h2>The last hour</h2>
<div class="graphs" id="graphs">{graphs}</div>
<h2>Replication</h2>
<table id="replication">
<tr><th>safe mode</th><td id="safe-mode">{safe}</td></tr>
<tr><th>under-replicated chunks</th><td id="under">{under}</td></tr>
<tr><th>of them waiting for a lease or a copy</th><td id="waiting">{waiting}</td></tr>
<tr><th>of them short of chunkservers</th><td id="short">{short}</td></tr>
<tr><th>missing chunks</th><td id="missing">{missing}</td></tr>
<tr><th>corrupt replicas</th><td>{corrupt}</td></tr>
<tr><th>repair copies in flight</th><td>{copies}</td></tr>
</table>
<p class="muted">Under-replicated and missing as the healer's last round counted them{counted}, as <code>kfs fsck</code> counts them.</p>
<h2>Small files</h2>
<table id="small-files">
<tr><th>volumes</th><td id="volumes">{volumes}</td></tr>
<tr><th>packed files</th><td id="packed-files">{packed_files}</td></tr>
<tr><th>bytes in packed files</th><td>{packed_bytes}</td></tr>
<tr><th>compaction (since start)</th><td id="compaction">{compacted} volumes, {moved_records} records ({moved_bytes}) moved</td></tr>
</table>
"#,
        master = esc(&s.master.to_string()),
        version = esc(s.version),
        uptime = s.uptime_secs,
        vclass = verdict.0,
        vtext = verdict.1,
        files = s.summary.files,
        dirs = s.summary.dirs,
        chunks = s.summary.chunks,
        bytes = size(s.summary.bytes),
        capacity = size(s.summary.capacity),
        used = size(s.summary.used),
        available = size(s.summary.available),
        alive = s.summary.servers_alive,
        dead = s.summary.servers_dead,
        draining = s.summary.servers_draining,
        safe = if s.replication.safe_mode {
            let r = &s.replication;
            format!(
                "on: {} of {} chunks reported ({}%; it ends at {:.1}%, or in {:.0} s at most)",
                r.safe_mode_reported,
                r.safe_mode_total,
                (r.safe_mode_reported * 100)
                    .checked_div(r.safe_mode_total)
                    .unwrap_or(100),
                r.safe_mode_threshold * 100.0,
                r.safe_mode_remaining_ms as f64 / 1000.0
            )
        } else {
            "off".to_string()
        },
        open_writing = s.open_files.writing,
        open_gone = s.open_files.writer_gone,
        leases = s.open_files.leases,
        graphs = {
            let r = &s.history;
            [
                super::history::svg(
                    "graph-ops",
                    "namespace operations",
                    "/s",
                    &r.ago_secs,
                    &r.ops_per_sec,
                ),
                super::history::svg(
                    "graph-bytes",
                    "file bytes added",
                    "B/s",
                    &r.ago_secs,
                    &r.bytes_per_sec,
                ),
                super::history::svg(
                    "graph-data-written",
                    "data written to chunkservers (every replica)",
                    "B/s",
                    &r.ago_secs,
                    &r.data_written_per_sec,
                ),
                super::history::svg(
                    "graph-data-read",
                    "data read from chunkservers",
                    "B/s",
                    &r.ago_secs,
                    &r.data_read_per_sec,
                ),
                super::history::svg(
                    "graph-commit",
                    "mean group commit",
                    "ms",
                    &r.ago_secs,
                    &r.commit_ms,
                ),
            ]
            .concat()
        },
        under = count_or_dash(s.replication.under_replicated),
        waiting = count_or_dash(s.replication.waiting),
        short = count_or_dash(s.replication.short_of_servers),
        missing = count_or_dash(s.replication.missing),
        corrupt = s.replication.corrupt_replicas,
        copies = s.replication.copies_in_flight,
        volumes = s.small_files.volumes,
        packed_files = s.small_files.packed_files,
        packed_bytes = size(s.small_files.packed_bytes),
        compacted = s.small_files.compacted_volumes,
        moved_records = s.small_files.moved_records,
        moved_bytes = size(s.small_files.moved_bytes),
        counted = s
            .replication
            .counted_ms_ago
            .map_or_else(String::new, |ms| format!(", {ms} ms ago")),
    );
    super::page_servers::servers(&mut h, s);
    super::page_servers::gateways(&mut h, s);
    let c = &s.workers.committer;
    let hl = &s.workers.healer;
    let _ = write!(
        h,
        r#"<h2>Background workers</h2>
<table id="workers">
<tr><th>operation log</th><td class="{logclass}">{log}: {ops} ops in {batches} group commits, last record {last_seq}</td></tr>
<tr><th>checkpoints</th><td id="checkpoints">{checkpoints} written by this process, newest at record {checkpoint_seq}{age}{writing}{failures}</td></tr>
<tr><th>healer</th><td>{rounds} rounds, last took {round_ms:.1} ms; copies {started} started, {done} done, {failed} failed</td></tr>
</table>
"#,
        logclass = if c.log == "ok" { "ok" } else { "bad" },
        log = c.log,
        ops = c.ops,
        batches = c.batches,
        last_seq = c.last_seq,
        checkpoints = c.checkpoints,
        checkpoint_seq = c.checkpoint_seq,
        age = if c.checkpoint_unix_secs > 0 {
            let now = kfs_common::proto::now_unix_secs();
            format!(", {} s ago", now.saturating_sub(c.checkpoint_unix_secs))
        } else {
            " (none written since start)".to_string()
        },
        writing = if c.checkpointing {
            "; writing one now"
        } else {
            ""
        },
        failures = if c.checkpoint_failures > 0 {
            format!("; {} failed", c.checkpoint_failures)
        } else {
            String::new()
        },
        rounds = hl.rounds,
        round_ms = hl.last_round_ms,
        started = hl.copies_started,
        done = hl.copies_done,
        failed = hl.copies_failed,
    );
    h.push_str(
        "<table id=\"worker-loops\">\n<tr><th>worker</th><th>state</th><th>rounds</th>\
         <th>last round</th><th>last</th></tr>\n",
    );
    for w in &s.workers.loops {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&w.name),
            w.state,
            w.rounds,
            w.since_last_round_ms.map_or_else(
                || "-".to_string(),
                |ms| format!("{:.1} s ago", ms as f64 / 1000.0)
            ),
            esc(&w.note)
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_servers_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
