//! Standard output, where reports and `--json` summaries go.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`kato-image build | head
//! -1`). By then the work it reports on is done and its outputs are in place, so a reader
//! that stopped reading ends the process quietly, with success, as `head` meant; any other
//! failure to write (a full disk under `> report.json`) is an error and exit status 1.

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

pub(crate) fn line(text: std::fmt::Arguments) {
    if let Err(error) = writeln!(io::stdout().lock(), "{text}") {
        failed(&error)
    }
}

/// Standard output as a writer that never returns an error, for whatever writes a whole
/// document (a rendered config, completions, the man page).
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        io::stdout().write(bytes).or_else(|error| failed(&error))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush().or_else(|error| failed(&error))
    }
}

fn failed(error: &io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("kato-image: error: cannot write to standard output: {error}");
    std::process::exit(1)
}
