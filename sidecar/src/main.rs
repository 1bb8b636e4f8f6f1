//! `agentstate`: the sidecar daemon (`serve`) and the admin commands (`dump`, `check`,
//! `recover`, `cleanup`, `export`, `import`). Thin: parse, set up logging, run.

use std::process::ExitCode;

use agentstate_sidecar::config::{env, Cli, Command, Config, ConfigError};
use agentstate_sidecar::{admin, server};
use clap::Parser;

/// The request path allocates small, short-lived buffers at a high rate; mimalloc's
/// thread-local free lists serve them with less CPU than glibc's malloc (bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `EX_USAGE`: the configuration is wrong, restarting will not help.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentstate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let config = match Config::from_args(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("agentstate: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match runtime.block_on(server::run(config, shutdown_signal(), |_| {})) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "sidecar failed");
                    eprintln!("agentstate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dump(args) => finish(admin::dump(args)),
        Command::Check(args) => finish(runtime.block_on(admin::check(args))),
        Command::Recover(args) => finish(runtime.block_on(admin::recover(args))),
        Command::Cleanup(args) => finish(runtime.block_on(admin::cleanup(args))),
        Command::Export(args) => finish(runtime.block_on(admin::export(args))),
        Command::Usage(args) => finish(runtime.block_on(admin::usage(args))),
        Command::Import(args) => finish(runtime.block_on(admin::import(args))),
    }
}

/// An admin command's exit code; a configuration error exits 64.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentstate: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs to stderr, in colour only on a terminal; `RUST_LOG` sets the level (default
/// `info`), `AGENTSTATE_LOG_FORMAT=json` switches to JSON lines.
fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var(env::LOG_FORMAT).is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the sidecar");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
