//! The `kato-image` binary: everything it does is in `cli`, over the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
