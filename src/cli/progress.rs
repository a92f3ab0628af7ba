//! Progress on stderr: a bar on a terminal; elsewhere only notes, or with `--progress`
//! plain periodic lines (CI logs).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kato_image::progress::Progress;

pub enum Reporter {
    Bar(Mutex<Option<ProgressBar>>),
    Lines(Mutex<LineState>),
    /// No progress, but notes (retries, resumed downloads) still go to stderr: for --json.
    NotesOnly,
    Quiet,
}

pub struct LineState {
    name: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
}

const LINE_EVERY: Duration = Duration::from_secs(10);

/// `--progress`: progress lines even when stderr is not a terminal.
pub static LINES_WANTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Reporter {
    /// `quiet`: nothing at all; `json`: notes only (stdout carries the JSON). A bar on a
    /// terminal; elsewhere notes only, unless `--progress` asks for periodic lines (CI logs),
    /// so that a failing command's error is the only line a script sees.
    pub fn for_stderr(quiet: bool, json: bool) -> Self {
        let lines = LINES_WANTED.load(std::sync::atomic::Ordering::Relaxed);
        if quiet {
            Reporter::Quiet
        } else if json && !lines {
            Reporter::NotesOnly
        } else if std::io::stderr().is_terminal() && !json {
            Reporter::Bar(Mutex::new(None))
        } else if !lines {
            Reporter::NotesOnly
        } else {
            Reporter::Lines(Mutex::new(LineState {
                name: String::new(),
                total: None,
                done: 0,
                started: Instant::now(),
                last: Instant::now(),
            }))
        }
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl LineState {
    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = bytes((self.done as f64 / elapsed) as u64);
        match self.total {
            Some(total) if total > 0 => format!(
                "{}: {} of {} ({}%), {rate}/s",
                self.name,
                bytes(self.done),
                bytes(total),
                self.done * 100 / total
            ),
            _ => format!("{}: {}, {rate}/s", self.name, bytes(self.done)),
        }
    }
}

impl Progress for Reporter {
    fn start(&self, name: &str, total: Option<u64>) {
        match self {
            Reporter::Bar(bar) => {
                let new = match total {
                    Some(total) => ProgressBar::new(total),
                    None => ProgressBar::no_length(),
                };
                new.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                new.set_message(name.to_string());
                *bar.lock().expect("progress lock") = Some(new);
            }
            Reporter::Lines(state) => {
                let mut state = state.lock().expect("progress lock");
                *state = LineState {
                    name: name.to_string(),
                    total,
                    done: 0,
                    started: Instant::now(),
                    last: Instant::now(),
                };
                match total {
                    Some(total) => eprintln!("{name}: {}", bytes(total)),
                    None => eprintln!("{name}"),
                }
            }
            Reporter::NotesOnly | Reporter::Quiet => {}
        }
    }

    fn advance(&self, n: u64) {
        match self {
            Reporter::Bar(bar) => {
                if let Some(bar) = bar.lock().expect("progress lock").as_ref() {
                    bar.inc(n);
                }
            }
            Reporter::Lines(state) => {
                let mut state = state.lock().expect("progress lock");
                state.done += n;
                if state.last.elapsed() >= LINE_EVERY {
                    state.last = Instant::now();
                    eprintln!("{}", state.line());
                }
            }
            Reporter::NotesOnly | Reporter::Quiet => {}
        }
    }

    fn finish(&self) {
        match self {
            Reporter::Bar(bar) => {
                if let Some(bar) = bar.lock().expect("progress lock").take() {
                    bar.finish_and_clear();
                }
            }
            Reporter::Lines(state) => {
                let state = state.lock().expect("progress lock");
                eprintln!(
                    "{} in {:.1}s",
                    state.line(),
                    state.started.elapsed().as_secs_f64()
                );
            }
            Reporter::NotesOnly | Reporter::Quiet => {}
        }
    }

    fn note(&self, message: &str) {
        let message = kato_image::origin::printable(message);
        let message = message.as_str();
        match self {
            Reporter::Bar(bar) => match bar.lock().expect("progress lock").as_ref() {
                Some(bar) => bar.println(message),
                None => eprintln!("{message}"),
            },
            Reporter::Lines(_) | Reporter::NotesOnly => eprintln!("{message}"),
            Reporter::Quiet => {}
        }
    }

    fn warn(&self, message: &str) {
        eprintln!(
            "kato-image: warning: {}",
            kato_image::origin::printable(message)
        );
    }
}
