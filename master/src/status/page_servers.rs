//! The status page's tables of servers: chunkservers (with a use bar, their build, a link to
//! their `/metrics`, their data dirs and scrubber in short), every data dir of every chunkserver,
//! and the gateways. Rows carry classes for their state (`tr.server.alive`, `tr.dir.failed`, `tr.dir.in-service`,
//! `tr.gateway.silent`) that the browser test and the page's style use.
//!
//! What a server says of itself (version, dirs, scrub, addresses) is text from outside: it goes
//! through `esc`, and a link is drawn only to a socket address the master parsed.

use super::page::{esc, size};
use super::{ServerRow, Status};
use std::fmt::Write as _;

/// A use bar: `used` of `capacity`, red from 90%.
fn bar(used: u64, capacity: u64) -> String {
    let percent = used
        .saturating_mul(100)
        .checked_div(capacity)
        .unwrap_or(0)
        .min(100);
    let full = if percent >= 90 { " full" } else { "" };
    format!(
        "<span class=\"bar{full}\" title=\"{percent}% used\"><span style=\"width:{percent}%\">\
         </span></span> {percent}%"
    )
}

/// The data dirs in short: `2 of 2 in service`, or how many failed.
fn dirs_in_short(r: &ServerRow) -> String {
    if r.dirs.is_empty() {
        return "–".into();
    }
    let failed = r.dirs.iter().filter(|d| d.failed).count();
    if failed == 0 {
        format!("{} in service", r.dirs.len())
    } else {
        format!(
            "<span class=\"bad\">{failed} of {} failed</span>",
            r.dirs.len()
        )
    }
}

/// The scrubber in short: the pass under way and when the last one ended.
fn scrub_in_short(r: &ServerRow, now_unix_secs: u64) -> String {
    let Some(scrub) = r.scrub else {
        return "–".into();
    };
    if !scrub.enabled {
        return "off".into();
    }
    let last = if scrub.last_pass_unix_secs == 0 {
        "first pass".to_string()
    } else {
        format!(
            "{} passes, last ended {} s ago",
            scrub.passes,
            now_unix_secs.saturating_sub(scrub.last_pass_unix_secs)
        )
    };
    format!(
        "{} of {} replicas; {last}; {} verified",
        scrub.pass_done,
        scrub.pass_total,
        size(scrub.bytes)
    )
}

/// The chunkservers' table and their data dirs' table.
pub(super) fn servers(h: &mut String, s: &Status) {
    let now = kfs_common::proto::now_unix_secs();
    h.push_str(
        "<h2>Chunkservers</h2>\n<table id=\"servers\">\n<tr><th>server</th><th>address</th>\
         <th>version</th><th>state</th><th>use</th><th>capacity</th><th>used</th>\
         <th>available</th><th>chunks</th><th>corrupt</th><th>data dirs</th><th>scrub</th>\
         <th>last heartbeat</th><th>metrics</th></tr>\n",
    );
    for r in &s.servers {
        let metrics = r.http.map_or_else(
            || "–".to_string(),
            |at| format!("<a class=\"metrics\" href=\"http://{at}/metrics\">/metrics</a>"),
        );
        let _ = writeln!(
            h,
            "<tr class=\"server {state}\"><td title=\"{full}\">{id}</td><td>{addr}</td>\
             <td class=\"version\">{version}</td><td class=\"state\">{state}</td><td>{bar}</td>\
             <td>{capacity}</td><td>{used}</td><td>{available}</td><td>{chunks}</td>\
             <td>{corrupt}</td><td class=\"dirs\">{dirs}</td><td class=\"scrub\">{scrub}</td>\
             <td>{hb:.1} s ago</td><td>{metrics}</td></tr>",
            state = r.state,
            id = esc(r.id.get(..8).unwrap_or(&r.id)),
            full = esc(&r.id),
            addr = esc(&r.addr.to_string()),
            version = esc(r.version.as_deref().unwrap_or("–")),
            bar = bar(r.used, r.capacity),
            capacity = size(r.capacity),
            used = size(r.used),
            available = size(r.available),
            chunks = r.chunks,
            corrupt = r.corrupt,
            dirs = dirs_in_short(r),
            scrub = esc(&scrub_in_short(r, now)),
            hb = r.last_heartbeat_ms_ago as f64 / 1000.0,
        );
    }
    if s.servers.is_empty() {
        h.push_str("<tr><td colspan=\"14\">no chunkserver has registered</td></tr>\n");
    }
    h.push_str(
        "</table>\n<h2>Data dirs</h2>\n<table id=\"dirs\">\n<tr><th>server</th><th>dir</th>\
         <th>state</th><th>disk use</th><th>capacity</th><th>available</th><th>replicas</th></tr>\n",
    );
    let mut any = false;
    for r in &s.servers {
        for d in &r.dirs {
            any = true;
            let state = if d.failed { "failed" } else { "in service" };
            let used = d.capacity.saturating_sub(d.available);
            let _ = writeln!(
                h,
                "<tr class=\"dir {class}\"><td>{id}</td><td>{path}</td><td class=\"state\">\
                 {state}</td><td>{bar}</td><td>{capacity}</td><td>{available}</td>\
                 <td>{replicas}</td></tr>",
                class = if d.failed { "failed" } else { "in-service" },
                id = esc(r.id.get(..8).unwrap_or(&r.id)),
                path = esc(&d.path),
                bar = if d.failed {
                    "–".to_string()
                } else {
                    bar(used, d.capacity)
                },
                capacity = size(d.capacity),
                available = size(d.available),
                replicas = d.replicas,
            );
        }
    }
    if !any {
        h.push_str("<tr><td colspan=\"7\">no chunkserver has described its data dirs</td></tr>\n");
    }
    h.push_str("</table>\n");
}

/// The gateways' table.
pub(super) fn gateways(h: &mut String, s: &Status) {
    h.push_str(
        "<h2>Gateways</h2>\n<table id=\"gateways\">\n<tr><th>kind</th><th>address</th>\
         <th>version</th><th>root</th><th>state</th><th>last report</th><th>metrics</th></tr>\n",
    );
    for g in &s.gateways {
        let state = if g.silent { "silent" } else { "reporting" };
        let metrics = g.metrics.map_or_else(
            || "–".to_string(),
            |at| format!("<a class=\"metrics\" href=\"http://{at}/metrics\">/metrics</a>"),
        );
        let _ = writeln!(
            h,
            "<tr class=\"gateway {state}\"><td>{kind}</td><td>{listen}</td>\
             <td class=\"version\">{version}</td><td>{root}</td><td class=\"state\">{state}</td>\
             <td>{ago:.1} s ago</td><td>{metrics}</td></tr>",
            kind = esc(&g.kind),
            listen = esc(&g.listen.to_string()),
            version = esc(&g.version),
            root = esc(&g.root),
            ago = g.last_report_ms_ago as f64 / 1000.0,
        );
    }
    if s.gateways.is_empty() {
        h.push_str("<tr><td colspan=\"7\">no gateway has reported</td></tr>\n");
    }
    h.push_str("</table>\n");
}
