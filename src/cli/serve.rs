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
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (listener, wide) = kato_image::serve::bind(args.listen).await?;
        let local = listener.local_addr()?;
        if wide {
            eprintln!("WARNING: listening on {local}, which other machines can reach; use --listen 127.0.0.1:PORT to serve only this one");
        }
        eprintln!("serving {} on http://{local}/ (Ctrl-C to stop)", args.dir.display());
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping");
        };
        kato_image::serve::serve(&args.dir, listener, shutdown, |entry| {
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
