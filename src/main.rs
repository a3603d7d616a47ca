//! The `strata` binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use strata::settings::{Settings, SettingsLayer};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Strata: a Kafka-compatible broker with a log tiered to object storage.
#[derive(Debug, Parser)]
#[command(name = "strata", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Compact the remote tier and sweep the bucket of a cluster (`--etcd`), next to brokers
    /// started with `--remote-compaction service`; several may run.
    Compactor(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// A TOML file of settings (keys as the flags, without the dashes in front).
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsLayer,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (args, compactor) = match cli.command {
        Some(Command::Serve(args)) => (args, false),
        Some(Command::Compactor(args)) => (args, true),
        None => (cli.serve, false),
    };
    let file = match &args.config {
        Some(path) => SettingsLayer::from_file(path)?,
        None => SettingsLayer::default(),
    };
    let settings = Settings::resolve(args.settings.or(file))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            if compactor {
                compact(settings).await
            } else {
                serve(settings).await
            }
        })
}

async fn compact(settings: Settings) -> anyhow::Result<()> {
    let compactor = strata::compactor::Compactor::start(settings).await?;
    let metrics = compactor.metrics_addr()?;
    println!(
        "strata compactor {} listening on {metrics} (metrics on http://{metrics}/metrics)",
        compactor.id()
    );
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    compactor.run(cancel).await;
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let data_dir = settings.data_dir.clone();
    let running = strata::app::start(settings).await?;
    let addr = running.local_addr()?;
    let metrics = running.metrics_addr()?;
    println!(
        "strata listening on {addr} (data in {}, metrics on http://{metrics}/metrics)",
        data_dir.display()
    );
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    running.run(cancel).await;
    Ok(())
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received; shutting down"),
    }
    cancel.cancel();
}
