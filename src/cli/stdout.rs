//! Standard output, where reports and `--json` summaries go.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`kato-image build | head
//! -1`). By then the work it reports on is done and its outputs are in place, so once the
//! reader has stopped reading, the rest of the report is dropped and the command ends as it
//! would have (its warnings on stderr included); any other failure to write (a full disk
//! under `> report.json`) is an error and exit status 1.

use std::io::{self, Write};

/// Writes one line (`format!` arguments) to standard output.
macro_rules! say {
    () => {
        $crate::cli::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::stdout::line(format_args!($($arg)*))
    };
}

/// Writes a whole document (a rendered config, completions, the man page) and flushes it.
pub(crate) fn document(bytes: &[u8]) -> io::Result<()> {
    let mut out = Stdout;
    out.write_all(bytes).and_then(|()| out.flush())
}

pub(crate) fn line(text: std::fmt::Arguments) {
    if let Err(error) = writeln!(Stdout, "{text}") {
        eprintln!("kato-image: error: cannot write to standard output: {error}");
        std::process::exit(1)
    }
}

/// Standard output as a writer, for whatever writes a whole document (a rendered config,
/// completions, the man page): what a gone reader would have read is dropped, and any other
/// failure is the caller's error.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        gone_is_fine(io::stdout().write(bytes), bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        gone_is_fine(io::stdout().flush(), ())
    }
}

fn gone_is_fine<T>(result: io::Result<T>, dropped: T) -> io::Result<T> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(dropped),
        other => other,
    }
}
