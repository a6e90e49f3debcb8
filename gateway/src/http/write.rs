//! `PUT` and `DELETE`, allowed only with the gateway's write token (`Authorization: Bearer`).
//!
//! An upload is atomic: the body is written to a temporary file in the target's directory
//! (`.kfs-upload-<random>`, hidden from listings), synced on every replica, then renamed over the
//! target, so a reader sees the old file or the whole new one, never a part, and a `201`/`204`
//! means the bytes are durable. Missing parent directories are created. A body over the size
//! limit (by `Content-Length`, or as it arrives) gets 413 and leaves nothing behind; so does an
//! interrupted one. `DELETE` removes a file or an empty directory (never a tree).

use super::{Gateway, error_text, kfs_error, stream_permit};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use headers::HeaderMapExt;
use kfs_common::proto::master::CreateOptions;
use kfs_common::{FileKind, KfsError};
use tokio::io::AsyncWriteExt;

/// How long an upload may send nothing before it is given up (408).
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// An upload's temporary file (and, while it is written, its handle), removed when this is
/// dropped armed: when the request is dropped half-way (the client went away). Error paths
/// remove it themselves (awaited) and disarm it; a finished upload disarms it after the rename.
struct TempUpload {
    client: kfs_client::Client,
    path: String,
    file: Option<kfs_client::File>,
    armed: bool,
}

impl TempUpload {
    fn file(&mut self) -> &mut kfs_client::File {
        self.file.as_mut().expect("the upload's file is open")
    }

    /// Lets go of the handle's unfinished writes: the file is about to be removed.
    fn abandon_file(&mut self) {
        if let Some(file) = self.file.take() {
            file.abandon();
        }
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.abandon_file();
        let (client, path) = (self.client.clone(), std::mem::take(&mut self.path));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = client.remove(&path).await {
                    tracing::warn!(%path, error = %e, "could not remove an abandoned upload");
                }
            });
        }
    }
}

/// Compares in time that does not depend on where the inputs differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `None` when the request carries the write token; else the response that refuses it.
fn refusal(gw: &Gateway, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &gw.config.write_token else {
        return Some(error_text(
            StatusCode::FORBIDDEN,
            "this gateway is read-only (start it with --write-token-file to allow PUT and DELETE)",
        ));
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match sent {
        Some(sent) if same_secret(sent.trim().as_bytes(), token.as_bytes()) => None,
        _ => {
            let mut r = error_text(
                StatusCode::UNAUTHORIZED,
                "a write needs the gateway's token: Authorization: Bearer TOKEN",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kfs\""),
            );
            Some(r)
        }
    }
}

fn too_large(max: u64) -> Response {
    error_text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is larger than this gateway takes ({max} bytes)"),
    )
}

/// Bytes of an over-long body read and dropped so the client can read the 413 (a connection
/// closed while it still sends would end in a broken pipe instead).
const DRAIN_BYTES: u64 = 16 << 20;
/// ... for this long at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn drain(
    body: &mut axum::body::BodyDataStream,
    received: &prometheus_client::metrics::counter::Counter,
) {
    let mut dropped = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while dropped < DRAIN_BYTES {
            match body.next().await {
                Some(Ok(piece)) => {
                    dropped += piece.len() as u64;
                    received.inc_by(piece.len() as u64);
                }
                _ => break,
            }
        }
    })
    .await;
}

pub async fn put(gw: &Gateway, path: &str, request: Request) -> Response {
    if let Some(refused) = refusal(gw, request.headers()) {
        return refused;
    }
    let Ok(Some((parent, _))) = kfs_common::path::split_parent(path) else {
        return error_text(
            StatusCode::CONFLICT,
            "cannot upload over the root directory",
        );
    };
    if path == gw.config.root.trim_end_matches('/') || request.uri().path().ends_with('/') {
        return error_text(
            StatusCode::CONFLICT,
            "a PUT names a file, not a directory (no trailing '/')",
        );
    }
    let shown = super::shown(gw, path);
    let max = gw.config.max_body;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return too_large(max);
    }
    let cost = declared.unwrap_or(max).min(super::admission::WRITE_WINDOW);
    let _permit = match stream_permit(gw, cost).await {
        Ok(permit) => permit,
        Err(busy) => return *busy,
    };
    let client = &gw.client;
    let existed = match client.stat(path).await {
        Ok(attr) if attr.kind == FileKind::Dir => {
            return kfs_error(
                gw,
                &format!("upload to '{shown}'"),
                &KfsError::is_a_directory(shown),
            );
        }
        Ok(_) => true,
        Err(KfsError::NotFound { .. }) => false,
        Err(e) => return kfs_error(gw, &format!("upload to '{shown}'"), &e),
    };
    if let Err(e) = client.mkdir_all(parent).await {
        return kfs_error(
            gw,
            &format!("create the parent directories of '{shown}'"),
            &e,
        );
    }
    let temp = kfs_common::path::join(parent, &kfs_client::copy::upload_temp_name());
    let options = CreateOptions {
        exclusive: true,
        replication: gw.config.replication,
        mode: None,
    };
    let file = match client.create_with(&temp, options).await {
        Ok(file) => file,
        Err(e) => return kfs_error(gw, &format!("upload to '{shown}'"), &e),
    };
    let mut upload = TempUpload {
        client: client.clone(),
        path: temp.clone(),
        file: Some(file),
        armed: true,
    };
    let mut received = 0u64;
    let mut body = request.into_body().into_data_stream();
    let mut failure: Option<Response> = None;
    loop {
        let piece = match tokio::time::timeout(BODY_IDLE, body.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(piece))) => piece,
            Ok(Some(Err(e))) => {
                failure = Some(error_text(
                    StatusCode::BAD_REQUEST,
                    &format!("the upload was cut short: {e}"),
                ));
                break;
            }
            Err(_) => {
                failure = Some(error_text(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("the upload sent nothing for {} s", BODY_IDLE.as_secs()),
                ));
                break;
            }
        };
        received += piece.len() as u64;
        gw.metrics.received_bytes.inc_by(piece.len() as u64);
        if received > max {
            failure = Some(too_large(max));
            drain(&mut body, &gw.metrics.received_bytes).await;
            break;
        }
        if let Err(e) = upload.file().write_all(&piece).await {
            failure = Some(kfs_error(
                gw,
                &format!("write '{shown}'"),
                &KfsError::Io(e.to_string()),
            ));
            break;
        }
    }
    if failure.is_none()
        && let Some(declared) = declared
        && declared != received
    {
        failure = Some(error_text(
            StatusCode::BAD_REQUEST,
            &format!("the body had {received} bytes, Content-Length said {declared}"),
        ));
    }
    let written = match failure {
        Some(failed) => {
            // Writes still queued in the handle are let go before the file is removed.
            upload.abandon_file();
            Err(failed)
        }
        None => {
            let mut file = upload.file.take().expect("the upload's file is open");
            match file.sync().await {
                Ok(()) => file
                    .close()
                    .await
                    .map_err(|e| kfs_error(gw, &format!("write '{shown}'"), &e)),
                Err(e) => {
                    file.abandon();
                    Err(kfs_error(gw, &format!("write '{shown}'"), &e))
                }
            }
        }
    };
    let renamed = match written {
        Ok(attr) => client
            .rename(&temp, path)
            .await
            .map(|()| attr)
            .map_err(|e| kfs_error(gw, &format!("upload to '{shown}'"), &e)),
        Err(failed) => Err(failed),
    };
    gw.cache.forget_with_parents(path);
    match renamed {
        Ok(attr) => {
            upload.armed = false;
            let status = if existed {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::CREATED
            };
            let mut r = status.into_response();
            r.headers_mut().typed_insert(super::read::etag_of(&attr));
            r
        }
        Err(failed) => {
            if let Err(e) = client.remove(&temp).await {
                tracing::warn!(path = %temp, error = %e, "could not remove a failed upload");
            }
            upload.armed = false;
            failed
        }
    }
}

pub async fn delete(gw: &Gateway, path: &str, headers: &HeaderMap) -> Response {
    if let Some(refused) = refusal(gw, headers) {
        return refused;
    }
    if path == gw.config.root.trim_end_matches('/') || path == "/" {
        return error_text(
            StatusCode::FORBIDDEN,
            "the gateway's root directory cannot be deleted",
        );
    }
    let client = &gw.client;
    let removed = match client.stat(path).await {
        Ok(attr) if attr.kind == FileKind::Dir => client.remove_dir(path).await,
        Ok(_) => client.remove(path).await,
        Err(e) => Err(e),
    };
    gw.cache.forget(path);
    match removed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => kfs_error(gw, &format!("remove '{}'", super::shown(gw, path)), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
