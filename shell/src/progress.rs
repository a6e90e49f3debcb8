//! Progress of copies: a bar naming the file (a tree: files done of all, and the one going),
//! with bytes, rate and time left, and a summary line at the end (`1.0 GiB in 11.3 s, 95 MiB/s`).
//! Both are drawn on standard error, and only when it is a terminal (never into a pipe or a
//! log).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    bytes: AtomicU64,
    files: AtomicU64,
    files_done: AtomicU64,
    /// The file being copied (the latest started).
    current: Mutex<String>,
}

impl Progress {
    /// A bar for `total` bytes; none when standard error is not a terminal.
    pub fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} {bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} {eta} left",
                )
                .expect("a valid template"),
            );
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            current: Mutex::new(String::new()),
        }
    }

    fn redraw(&self) {
        if let Some(bar) = &self.bar {
            let current = self.current.lock().expect("current lock").clone();
            let files = self.files.load(Ordering::Relaxed);
            bar.set_message(if files > 1 {
                format!(
                    "{}/{files} files, {current}",
                    self.files_done.load(Ordering::Relaxed)
                )
            } else {
                current
            });
        }
    }

    /// Prints around the bar.
    pub fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Clears the bar and, on a terminal, says what was copied: `1.0 GiB in 11.3 s, 95 MiB/s`
    /// (with the count of files for more than one).
    pub fn finish(&self) {
        let Some(bar) = &self.bar else { return };
        bar.finish_and_clear();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let files = self.files_done.load(Ordering::Relaxed);
        if files == 0 {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!("{}", summary(bytes, files, secs));
    }
}

/// `1.0 GiB in 11.3 s, 95 MiB/s` (`3 files, ...` for more than one).
pub fn summary(bytes: u64, files: u64, secs: f64) -> String {
    let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    let size = |b: f64| bytesize::ByteSize::b(b as u64).display().iec().to_string();
    let files = if files > 1 {
        format!("{files} files, ")
    } else {
        String::new()
    };
    format!(
        "{files}{} in {secs:.1} s, {}/s",
        size(bytes as f64),
        size(rate)
    )
}

impl kfs_client::copy::CopyProgress for Progress {
    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn files_found(&self, files: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.redraw();
    }

    fn file_started(&self, name: &str) {
        *self.current.lock().expect("current lock") = name.to_string();
        self.redraw();
    }

    fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.redraw();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summaries_read_as_people_write_them() {
        assert_eq!(
            super::summary(1 << 30, 1, 11.3),
            "1.0 GiB in 11.3 s, 90.6 MiB/s"
        );
        assert_eq!(
            super::summary(3000, 3, 0.5),
            "3 files, 2.9 KiB in 0.5 s, 5.9 KiB/s"
        );
    }
}
