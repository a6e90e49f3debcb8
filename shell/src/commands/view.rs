//! The commands that print a file: `cat`, `head` and `tail` (`-f`: then what is appended).
//!
//! Output goes to standard output as it is read (a closed pipe ends the program quietly).
//! `head` reads forward and `tail` backward, 64 KiB at a time, only until they have enough
//! lines; a final newline ends the last line, it does not start another. `tail -f` asks the
//! master for the file's length every half second and prints what was appended, until Ctrl-C.

use super::{Failed, each_path, one_path, out, report};
use crate::format::failure;
use crate::session::Session;
use kfs_common::{KfsError, KfsResult};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// `cat`: each file in turn.
pub(super) async fn cat_each(s: &Session, paths: &[String]) -> Result<(), Failed> {
    each_path(s, paths, "read", |p| {
        let client = s.client.clone();
        async move { cat(&client, &p).await }
    })
    .await
}

async fn cat(client: &kfs_client::Client, p: &str) -> KfsResult<()> {
    let mut file = client.open(p).await?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        out(&buf[..n]);
    }
}

/// `head` and `tail`: the first or last `lines` lines; with `follow`, then what is appended.
pub(super) async fn head_tail(
    s: &Session,
    arg: &str,
    lines: usize,
    head: bool,
    follow: bool,
) -> Result<(), Failed> {
    let verb = "read";
    let result = async {
        let p = one_path(s, arg).await?;
        let file = s.client.open(&p).await?;
        let size = file.len();
        if head {
            // Read forward until enough lines.
            let mut text = Vec::new();
            while (text.len() as u64) < size && text.iter().filter(|b| **b == b'\n').count() < lines
            {
                text.extend(file.read_at(text.len() as u64, 64 * 1024).await?);
            }
            out(first_lines(&text, lines));
            return Ok(());
        }
        // Read backward until enough lines.
        let mut start = size;
        let mut text: Vec<u8> = Vec::new();
        while start > 0 && text.iter().filter(|b| **b == b'\n').count() <= lines {
            let from = start.saturating_sub(64 * 1024);
            let mut piece = file.read_at(from, (start - from) as usize).await?;
            piece.extend(text);
            text = piece;
            start = from;
        }
        out(last_lines(&text, lines));
        if !follow {
            return Ok(());
        }
        let mut at = size;
        let follow_loop = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let attr = file.refresh().await?;
                if attr.size > at {
                    let piece = file.read_at(at, (attr.size - at) as usize).await?;
                    at += piece.len() as u64;
                    out(&piece);
                }
            }
        };
        tokio::select! {
            r = follow_loop => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    };
    result.await.map_err(|e: KfsError| {
        report(failure(verb, arg, &e));
        Failed
    })
}

/// The first `n` lines of `text`.
fn first_lines(text: &[u8], n: usize) -> &[u8] {
    match text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.wrapping_sub(1))
    {
        _ if n == 0 => &[],
        Some((i, _)) => &text[..=i],
        None => text,
    }
}

/// The last `n` lines of `text` (a final newline ends the last line, it does not start another).
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    match body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
    {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_lines() {
        let text = b"a\nb\nc\n";
        assert_eq!(first_lines(text, 2), b"a\nb\n");
        assert_eq!(first_lines(text, 5), text);
        assert_eq!(first_lines(text, 0), b"");
        assert_eq!(last_lines(text, 2), b"b\nc\n");
        assert_eq!(last_lines(text, 3), text);
        assert_eq!(last_lines(b"x\ny", 1), b"y");
        assert_eq!(last_lines(b"x\ny", 5), b"x\ny");
    }
}
