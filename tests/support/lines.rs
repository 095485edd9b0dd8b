//! The output of a running child, line by line, as it comes (for commands that keep running:
//! `watch`, `tell --follow`).

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::poll_until;

/// Lines of a stream, collected by a thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Collects the lines of `stream` until it closes.
    pub fn read(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        lines
    }

    /// The lines so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Polls (bounded by `within`) until some line satisfies `pred`; that line.
    pub fn wait_for(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let mut found = None;
        poll_until(within, || {
            found = self.all().into_iter().find(|l| pred(l));
            found.is_some()
        });
        found
    }

    /// Polls (bounded by `within`) until at least `n` lines came.
    pub fn wait_count(&self, within: Duration, n: usize) -> bool {
        poll_until(within, || self.all().len() >= n)
    }
}

/// The stdout and stderr lines of a child started with both piped.
pub fn follow(child: &mut Child) -> (Lines, Lines) {
    let out = child.stdout.take().expect("stdout piped");
    let err = child.stderr.take().expect("stderr piped");
    (Lines::read(out), Lines::read(err))
}
