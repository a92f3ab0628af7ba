//! `kato-image serve DIR`: the iPXE payload folder over HTTP, with an access log.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The folder to serve (e.g. OUT/ipxe from `build --output ipxe`).
    pub dir: PathBuf,
    /// Address and port to listen on. Loopback by default; a wider address is reachable by
    /// every machine that can route to this one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Connections open at once [default: half the open-files limit]; past it, a new client
    /// takes the slot of the oldest idle one.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a connection may stay open with nothing moving.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub idle_timeout: u64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // A folder that is not there is reported before anything is said about serving it.
    kato_image::serve::root(&args.dir)?;
    let limits = kato_image::serve::Limits {
        max: args
            .max_connections
            .unwrap_or_else(|| kato_image::serve::Limits::default().max)
            .max(1),
        header: std::time::Duration::from_secs(args.header_timeout.max(1)),
        idle: std::time::Duration::from_secs(args.idle_timeout.max(1)),
    };
    runtime.block_on(async {
        let (listener, wide) = kato_image::serve::bind(args.listen).await?;
        let local = listener.local_addr()?;
        if wide {
            eprintln!("WARNING: listening on {local}, which other machines can reach; use --listen 127.0.0.1:PORT to serve only this one");
        }
        // The handlers are in place before anyone is told where to connect: a SIGTERM that
        // comes right after the first request stops the server cleanly, never by default.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        eprintln!("serving {} on http://{local}/ (Ctrl-C to stop)", args.dir.display());
        let shutdown = async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping");
        };
        kato_image::serve::serve(&args.dir, listener, limits, shutdown, |entry| {
            eprintln!(
                "{} {} {} {} {} {:.1}ms",
                entry.peer,
                entry.method,
                entry.path,
                entry.status,
                entry.bytes.map_or_else(|| "-".to_string(), |b| b.to_string()),
                entry.duration.as_secs_f64() * 1000.0
            );
        })
        .await?;
        Ok(())
    })
}
