//! Logging: `tracing` for postern, with Pingora's `log` output bridged in, written to stderr
//! through a buffer so that a request's access-log line costs a copy, not a system call.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber once; later calls (tests building several servers) are no-ops.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Without a ceiling every `log::debug!` in Pingora's hot path would be bridged into tracing
    // and filtered there, record by record.
    let log_ceiling = match filter.max_level_hint() {
        Some(level) if level == tracing::level_filters::LevelFilter::OFF => log::LevelFilter::Off,
        Some(level) if level == tracing::level_filters::LevelFilter::ERROR => {
            log::LevelFilter::Error
        }
        Some(level) if level == tracing::level_filters::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(level) if level == tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        Some(level) if level == tracing::level_filters::LevelFilter::DEBUG => {
            log::LevelFilter::Debug
        }
        _ => log::LevelFilter::Trace,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BufferedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() {
        let _ = tracing_log::LogTracer::init_with_filter(log_ceiling);
    }
}

/// How long a line may wait in the buffer before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// The writer thread is woken early once this much is waiting.
const FLUSH_SIZE: usize = 64 * 1024;
/// Beyond this, lines are dropped (and counted) rather than block a worker thread on a stderr
/// that does not drain.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;
/// Room kept past the limit for warnings and errors, so that a flood of access lines cannot
/// push them out.
const URGENT_RESERVE: usize = 1024 * 1024;
/// The longest a final flush may take: a stderr that does not drain must not keep the process
/// from exiting.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);

/// Log lines waiting for the writer thread.
struct LogBuffer {
    lines: Mutex<Vec<u8>>,
    /// Held from taking a batch until it is written, so that a flush sees no batch in between.
    writing: Mutex<()>,
    wake: Condvar,
    dropped: AtomicU64,
    limit: usize,
    writer_running: AtomicBool,
}

impl LogBuffer {
    fn new(limit: usize) -> Self {
        Self {
            lines: Mutex::new(Vec::with_capacity(FLUSH_SIZE)),
            writing: Mutex::new(()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            limit,
            writer_running: AtomicBool::new(false),
        }
    }

    /// Adds a line; returns what must be written now by the caller: nothing once the writer
    /// thread runs (an urgent line wakes it), everything waiting for an urgent line before.
    fn push(&self, line: &[u8], urgent: bool) -> Option<Vec<u8>> {
        let Ok(mut lines) = self.lines.lock() else {
            return Some(line.to_vec());
        };
        let limit = if urgent {
            self.limit + URGENT_RESERVE
        } else {
            self.limit
        };
        if lines.len() + line.len() > limit {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let before = lines.len();
        lines.extend_from_slice(line);
        if urgent && !self.writer_running.load(Ordering::Relaxed) {
            return Some(std::mem::take(&mut *lines));
        }
        // One wake when the batch fills (not one per line after that), or for an urgent line.
        if urgent || (before < FLUSH_SIZE && lines.len() >= FLUSH_SIZE) {
            self.wake.notify_one();
        }
        None
    }

    /// Waits until the interval passes or the writer is woken.
    fn wait_for_lines(&self) -> Option<()> {
        let lines = self.lines.lock().ok()?;
        let _ = self.wake.wait_timeout(lines, FLUSH_INTERVAL).ok()?;
        Some(())
    }

    /// Takes everything waiting and writes it out; `spare` (the last batch, written) takes its
    /// place, so the buffer keeps its capacity. Returns the batch written, for the next call.
    fn write_batch(&self, mut spare: Vec<u8>, out: &mut impl Write) -> Vec<u8> {
        spare.clear();
        let Ok(_writing) = self.writing.lock() else {
            return spare;
        };
        let batch = match self.lines.lock() {
            Ok(mut lines) => std::mem::replace(&mut *lines, spare),
            Err(_) => return Vec::new(),
        };
        self.write_out(&batch, out);
        batch
    }

    #[cfg(test)]
    fn take(&self) -> Vec<u8> {
        self.lines
            .lock()
            .map(|mut lines| std::mem::take(&mut *lines))
            .unwrap_or_default()
    }

    /// What to write: a note about dropped lines first, then the lines.
    fn write_out(&self, lines: &[u8], out: &mut impl Write) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "postern: {dropped} log line(s) dropped: stderr did not keep up"
            );
        }
        let _ = out.write_all(lines);
        let _ = out.flush();
    }
}

fn log_buffer() -> &'static LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER.get_or_init(|| LogBuffer::new(MAX_BUFFERED))
}

/// Starts the thread that writes buffered lines out. Until it runs, lines wait (warnings and
/// errors, and [`flush`], still write at once): the server starts it after Pingora has
/// daemonized, since a thread does not survive the fork. Later calls do nothing.
pub fn start_writer() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("postern-log".into())
            .spawn(|| {
                let buffer = log_buffer();
                buffer.writer_running.store(true, Ordering::Relaxed);
                let mut batch = Vec::with_capacity(FLUSH_SIZE);
                while buffer.wait_for_lines().is_some() {
                    batch = buffer.write_batch(batch, &mut std::io::stderr().lock());
                }
                buffer.writer_running.store(false, Ordering::Relaxed);
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "no log writer thread: info lines are written only with warnings");
        }
    });
}

/// The background service that starts the writer thread inside the running server.
pub struct LogWriter;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for LogWriter {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        start_writer();
    }
}

/// Writes everything buffered now (before the process exits), waiting for a batch the writer
/// thread has taken; gives up after [`FLUSH_DEADLINE`] when stderr does not drain.
pub fn flush() {
    let (done, finished) = std::sync::mpsc::channel();
    let flushing = std::thread::Builder::new()
        .name("postern-log-flush".into())
        .spawn(move || {
            log_buffer().write_batch(Vec::new(), &mut std::io::stderr().lock());
            let _ = done.send(());
        });
    match flushing {
        Ok(_) => {
            let _ = finished.recv_timeout(FLUSH_DEADLINE);
        }
        Err(_) => {
            log_buffer().write_batch(Vec::new(), &mut std::io::stderr().lock());
        }
    }
}

/// The subscriber's writer: every line goes through the buffer; a warning or an error wakes the
/// writer thread at once (before it runs, the caller writes it out itself).
struct BufferedStderr;

struct LineWriter {
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let buffer = log_buffer();
        if let Some(now) = buffer.push(line, self.urgent) {
            buffer.write_out(&now, &mut std::io::stderr().lock());
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_until_an_urgent_one_takes_them_all_along() {
        let buffer = LogBuffer::new(1024);
        assert_eq!(buffer.push(b"access one\n", false), None);
        assert_eq!(buffer.push(b"access two\n", false), None);
        let now = buffer.push(b"a warning\n", true).unwrap();
        assert_eq!(now, b"access one\naccess two\na warning\n");
        assert!(buffer.take().is_empty());
    }

    #[test]
    fn a_full_buffer_drops_lines_and_says_how_many() {
        let buffer = LogBuffer::new(16);
        assert_eq!(buffer.push(b"0123456789\n", false), None);
        assert_eq!(buffer.push(b"0123456789\n", false), None);
        assert_eq!(buffer.push(b"0123456789\n", false), None);
        let mut out = Vec::new();
        buffer.write_out(&buffer.take(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "postern: 2 log line(s) dropped: stderr did not keep up\n0123456789\n"
        );
    }

    #[test]
    fn the_writer_thread_takes_the_batch_and_leaves_its_spare() {
        let buffer = LogBuffer::new(1024);
        buffer.push(b"waiting\n", false);
        let spare = Vec::with_capacity(4096);
        let mut out = Vec::new();
        assert_eq!(buffer.write_batch(spare, &mut out), b"waiting\n");
        assert_eq!(out, b"waiting\n");
        assert!(buffer.lines.lock().unwrap().capacity() >= 4096);
    }

    #[test]
    fn warnings_have_room_when_access_lines_filled_the_buffer() {
        let buffer = LogBuffer::new(16);
        buffer.writer_running.store(true, Ordering::Relaxed);
        assert_eq!(buffer.push(b"0123456789\n", false), None);
        assert_eq!(buffer.push(b"0123456789\n", false), None);
        assert_eq!(buffer.push(b"a warning\n", true), None);
        assert_eq!(buffer.take(), b"0123456789\na warning\n");
    }

    #[test]
    fn with_the_writer_running_an_urgent_line_is_left_to_it() {
        let buffer = LogBuffer::new(1024);
        buffer.writer_running.store(true, Ordering::Relaxed);
        assert_eq!(buffer.push(b"a warning\n", true), None);
        assert_eq!(buffer.take(), b"a warning\n");
    }
}
