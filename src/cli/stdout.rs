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

pub(crate) fn line(text: std::fmt::Arguments) {
    let _ = writeln!(Stdout, "{text}");
}

/// Standard output as a writer for whatever writes a whole document (a rendered config,
/// completions, the man page): what a gone reader would have read is dropped.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match io::stdout().write(bytes) {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(bytes.len()),
            // write_all tries again after an interruption.
            Err(error) if error.kind() != io::ErrorKind::Interrupted => failed(&error),
            written => written,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match io::stdout().flush() {
            Err(error) if error.kind() != io::ErrorKind::BrokenPipe => failed(&error),
            _ => Ok(()),
        }
    }
}

fn failed(error: &io::Error) -> ! {
    eprintln!("kato-image: error: cannot write to standard output: {error}");
    std::process::exit(1)
}
