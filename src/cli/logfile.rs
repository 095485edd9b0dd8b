//! The server's log file: `logs/switchboard-serve.log` beside the database, rotated to `.1` at
//! [`LOG_MAX`] so at most twice that stays on disk. The CLI logs to stderr only; `serve` adds
//! this file (its stderr may be hidden by the MCP client that started it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Layer;

/// A log file is rotated when it reaches this size.
pub const LOG_MAX: u64 = 8 * 1024 * 1024;

/// The file layer for `path` (plain text, no colours; info and above unless RUST_LOG says
/// otherwise), or `None` when the file cannot be opened (logging to stderr goes on).
pub fn file_layer<S>(path: &Path) -> Option<impl Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let writer = RotatingFile::open(path)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    Some(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_target(false)
            .with_writer(writer)
            .with_filter(filter),
    )
}

/// A file that is rotated to `<path>.1` past [`LOG_MAX`].
#[derive(Clone)]
struct RotatingFile {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
}

impl RotatingFile {
    fn open(path: &Path) -> Option<Self> {
        let file = switchboard::private_fs::open_append(path).ok()?;
        let written = file.metadata().map_or(0, |m| m.len());
        Some(Self {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file: Some(file),
                written,
            })),
        })
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.written + buf.len() as u64 > LOG_MAX {
            let mut rotated = inner.path.clone().into_os_string();
            rotated.push(".1");
            let _ = std::fs::rename(&inner.path, &rotated);
            inner.file = switchboard::private_fs::create(&inner.path).ok();
            inner.written = 0;
        }
        if let Some(f) = inner.file.as_mut() {
            f.write_all(buf)?;
            inner.written += buf.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_is_rotated_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/s.log");
        let mut f = RotatingFile::open(&path).unwrap();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..20 {
            f.write_all(&line).unwrap();
        }
        let main = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.path().join("logs/s.log.1"))
            .unwrap()
            .len();
        assert!(
            main <= LOG_MAX && old <= LOG_MAX && main > 0,
            "{main} {old}"
        );
    }
}
