//! `GET` and `HEAD`: files (ranges, validators, conditional requests, streaming) and directory
//! listings (JSON, paged).
//!
//! A file's validators: `ETag` `"<file id>-<length>-<mtime ns>"` (hex; it changes whenever
//! the file is rewritten, replaced or grows) and `Last-Modified` (its mtime, to the second, as
//! HTTP dates are). `If-None-Match` wins over `If-Modified-Since`; `If-Range` that does not match
//! turns a range request into a whole-file one.
//!
//! Bodies: a range of up to [`PIECE`] bytes is read before the response starts (so an error is
//! a proper status, and a stale cached entry can be retried); a longer one streams in pieces of
//! [`PIECE`] bytes with [`READ_AHEAD`] reads in flight, so memory per stream is bounded whatever
//! the file's size.

use super::cache::Meta;
use super::{
    Gateway, ListQuery, StreamPermit, error_text, kfs_error, list_query, shown, stream_permit,
};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use headers::{ETag, HeaderMapExt, IfModifiedSince, IfNoneMatch, LastModified};
use http_range_header::RangeUnsatisfiableError;
use kfs_client::FileReader;
use kfs_client::copy::UPLOAD_PREFIX;
use kfs_common::proto::master::FileAttr;
use kfs_common::{FileKind, KfsError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes read per piece of a streamed body.
pub const PIECE: u64 = 512 << 10;
/// Pieces read ahead of the one being sent.
pub const READ_AHEAD: usize = 2;

/// Serves `path` (a file or a directory).
pub async fn get(
    gw: &Gateway,
    path: &str,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    let head = method == Method::HEAD;
    let lookup = match gw.cache.lookup(path).await {
        Ok(lookup) => lookup,
        // A path through a file names nothing.
        Err(KfsError::NotADirectory { .. }) => return not_found(gw, path),
        Err(e) => return kfs_error(gw, &format!("stat '{}'", shown(gw, path)), &e),
    };
    let meta = match lookup.meta {
        Meta::File { attr, file } => match serve_file(gw, &attr, &file, headers, head).await {
            // A cached entry may be stale (its chunks gone or at a new version): once more,
            // with what the master says now.
            Err(_) if lookup.cached => match gw.cache.refresh(path).await {
                Ok(meta) => meta,
                Err(e) => return kfs_error(gw, &format!("stat '{}'", shown(gw, path)), &e),
            },
            Err(e) => return kfs_error(gw, &format!("read '{}'", shown(gw, path)), &e),
            Ok(response) => return response,
        },
        other => other,
    };
    match meta {
        Meta::File { attr, file } => serve_file(gw, &attr, &file, headers, head)
            .await
            .unwrap_or_else(|e| kfs_error(gw, &format!("read '{}'", shown(gw, path)), &e)),
        Meta::Dir => match list_query(uri) {
            Ok(query) => list(gw, path, &query, head).await,
            Err(bad) => error_text(StatusCode::BAD_REQUEST, &format!("bad query: {bad}")),
        },
        Meta::Missing => not_found(gw, path),
    }
}

fn not_found(gw: &Gateway, path: &str) -> Response {
    error_text(
        StatusCode::NOT_FOUND,
        &format!("'{}': No such file or directory", shown(gw, path)),
    )
}

/// The file's mtime, to the second (what an HTTP date can say).
fn modified(attr: &FileAttr) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(attr.mtime.max(0) as u64 / 1_000_000_000)
}

/// The entity tag of this version of a file (also what a PUT answers with).
pub(super) fn etag_of(attr: &FileAttr) -> ETag {
    format!("\"{:x}-{:x}-{:x}\"", attr.fid.0, attr.size, attr.mtime)
        .parse()
        .expect("a quoted hex string is an ETag")
}

/// What a request's `Range` asks of a file of `len` bytes.
enum Wanted {
    Whole,
    /// Bytes `start..end`.
    Part(u64, u64),
    Unsatisfiable,
}

/// Whether `If-Range` (absent, or naming this version of the file) lets a range be served.
/// Only a strong entity tag equal to this version's counts (RFC 9110 13.1.5). A date never does
/// here: HTTP dates have whole seconds, so two versions written within one second would look
/// alike, and a resumed download could splice them. Serving the whole file is always allowed.
fn if_range_holds(headers: &HeaderMap, etag: &str) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    value
        .to_str()
        .is_ok_and(|v| v.trim() == etag && !etag.starts_with("W/"))
}

fn wanted(headers: &HeaderMap, len: u64, range_allowed: bool) -> Wanted {
    let Some(value) = headers.get(header::RANGE) else {
        return Wanted::Whole;
    };
    if !range_allowed {
        return Wanted::Whole;
    }
    let Ok(text) = value.to_str() else {
        return Wanted::Whole;
    };
    let validated = http_range_header::parse_range_header(text).and_then(|r| r.validate(len));
    match validated {
        Ok(ranges) if ranges.len() == 1 => Wanted::Part(*ranges[0].start(), ranges[0].end() + 1),
        // No range (an empty file), or several: the whole file, as RFC 9110 allows.
        Ok(_) => Wanted::Whole,
        Err(RangeUnsatisfiableError::Unsatisfiable) => Wanted::Unsatisfiable,
        // A malformed Range is ignored, and so is an abusive one (too many, overlapping).
        Err(_) => Wanted::Whole,
    }
}

/// The response for a file, or the error of its first read.
async fn serve_file(
    gw: &Gateway,
    attr: &FileAttr,
    file: &FileReader,
    headers: &HeaderMap,
    head: bool,
) -> kfs_common::KfsResult<Response> {
    let etag = etag_of(attr);
    let last_modified = LastModified::from(modified(attr));
    let mut out = HeaderMap::new();
    out.typed_insert(etag.clone());
    out.typed_insert(last_modified);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // The type comes from the name alone: browsers must not guess another.
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let range_allowed = if_range_holds(headers, out[header::ETAG].to_str().unwrap_or_default());
    let fresh = match headers.typed_get::<IfNoneMatch>() {
        Some(if_none_match) => !if_none_match.precondition_passes(&etag),
        None => headers
            .typed_get::<IfModifiedSince>()
            .is_some_and(|since| !since.is_modified(modified(attr))),
    };
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    let len = attr.size;
    let (status, start, end) = match wanted(headers, len, range_allowed) {
        Wanted::Whole => (StatusCode::OK, 0, len),
        Wanted::Part(start, end) => {
            let range = headers::ContentRange::bytes(start..end, len)
                .expect("a validated range is a content range");
            out.typed_insert(range);
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        Wanted::Unsatisfiable => {
            out.typed_insert(headers::ContentRange::unsatisfied_bytes(len));
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                out,
                format!("the range is outside the file's {len} bytes\n"),
            )
                .into_response());
        }
    };
    let content_type = mime_guess::from_path(file.path()).first_or_octet_stream();
    if let Ok(value) = HeaderValue::from_str(content_type.essence_str()) {
        out.insert(header::CONTENT_TYPE, value);
    }
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if head {
        return Ok((status, out).into_response());
    }
    let cost = (end - start).min(super::admission::READ_WINDOW);
    let permit = match stream_permit(gw, cost).await {
        Ok(permit) => permit,
        Err(busy) => return Ok(*busy),
    };
    // The first piece before the response starts: errors become statuses.
    let first_end = end.min(start.saturating_add(PIECE));
    let first = read_exact(file, start, first_end).await?;
    gw.metrics.sent_bytes.inc_by(first.len() as u64);
    if first_end == end {
        drop(permit);
        return Ok((status, out, Body::from(first)).into_response());
    }
    let body = Body::from_stream(stream_rest(gw, file.clone(), first, first_end, end, permit));
    Ok((status, out, body).into_response())
}

/// Reads bytes `start..end`, all of them (a short read means the file changed under us).
async fn read_exact(file: &FileReader, start: u64, end: u64) -> kfs_common::KfsResult<Bytes> {
    let data = file.read_at(start, (end - start) as usize).await?;
    if (data.len() as u64) < end - start {
        return Err(kfs_common::KfsError::Unavailable(format!(
            "'{}' is shorter than its length said ({} bytes at {start}, {} wanted)",
            file.path(),
            data.len(),
            end - start
        )));
    }
    Ok(Bytes::from(data))
}

/// `first`, then the pieces of `from..end`, a few read ahead; the permit goes with the stream.
fn stream_rest(
    gw: &Gateway,
    file: FileReader,
    first: Bytes,
    from: u64,
    end: u64,
    permit: StreamPermit,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let sent = gw.metrics.sent_bytes.clone();
    let pieces = (from..end).step_by(PIECE as usize).map(move |at| {
        let file = file.clone();
        async move { read_exact(&file, at, end.min(at.saturating_add(PIECE))).await }
    });
    let rest = futures::stream::iter(pieces)
        .buffered(READ_AHEAD)
        .map(move |piece| {
            let _held = &permit;
            match piece {
                Ok(bytes) => {
                    sent.inc_by(bytes.len() as u64);
                    Ok(bytes)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a streamed read failed; the response is cut short");
                    Err(std::io::Error::other(e.to_string()))
                }
            }
        });
    futures::stream::once(async move { Ok(first) }).chain(rest)
}

/// One entry of a JSON listing.
#[derive(serde::Serialize)]
struct ListEntry {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    /// RFC 3339, UTC.
    mtime: String,
    replication: u8,
}

/// A page of a JSON listing.
#[derive(serde::Serialize)]
struct Listing {
    path: String,
    entries: Vec<ListEntry>,
    /// Pass as `?after=` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

async fn list(gw: &Gateway, path: &str, query: &ListQuery, head: bool) -> Response {
    let limit = query
        .limit
        .unwrap_or(gw.config.list_limit)
        .clamp(1, gw.config.list_limit.max(1));
    let page = match gw.client.list_page(path, query.after.clone(), limit).await {
        Ok(page) => page,
        Err(e) => return kfs_error(gw, &format!("list '{}'", shown(gw, path)), &e),
    };
    let next = if page.more {
        page.entries.last().map(|e| e.name.clone())
    } else {
        None
    };
    let entries = page
        .entries
        .into_iter()
        // Uploads in progress (the gateway's and `kfs put`'s) are not listed.
        .filter(|e| !e.name.starts_with(UPLOAD_PREFIX))
        .map(|e| {
            let attr = e.attr.unwrap_or(FileAttr {
                fid: e.fid,
                kind: e.kind,
                size: 0,
                mode: 0,
                owner: 0,
                group: 0,
                replication: 0,
                mtime: 0,
                atime: 0,
                nlink: 1,
                ctime: 0,
            });
            ListEntry {
                name: e.name,
                kind: if e.kind == FileKind::Dir {
                    "dir"
                } else {
                    "file"
                },
                size: attr.size,
                mtime: chrono::DateTime::from_timestamp_nanos(attr.mtime)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                replication: attr.replication,
            }
        })
        .collect();
    let listing = Listing {
        path: shown(gw, path).to_string(),
        entries,
        next,
    };
    let body = serde_json::to_string(&listing).expect("a listing serializes");
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if head {
        return (StatusCode::OK, out).into_response();
    }
    (StatusCode::OK, out, body).into_response()
}
