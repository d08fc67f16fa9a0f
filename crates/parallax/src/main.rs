//! The `parallax` command line: glue between the spec, the store, the providers and the runner.

mod cli;
mod commands;
mod exit;
mod output;
mod progress;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; every other argument error is bad input.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Plan(args) => commands::plan::run(&cli.global, args).await,
            Command::Run(args) => commands::run::run(&cli.global, args).await,
            Command::Submit(args) => commands::submit::run(&cli.global, args).await,
            Command::Worker(args) => commands::worker::run(&cli.global, args).await,
            Command::Workers(args) => commands::workers::run(&cli.global, args).await,
            Command::Cancel(args) => commands::cancel::run(&cli.global, args).await,
            Command::Status(args) => commands::status::run(&cli.global, args).await,
            Command::Results(args) => commands::results::run(&cli.global, args).await,
            Command::Classify(args) => commands::classify::run(&cli.global, args).await,
            Command::Report(args) => commands::report::run(&cli.global, args).await,
            Command::Doctor(args) => commands::doctor::run(&cli.global, args).await,
            Command::Probe(args) => commands::probe::run(&cli.global, args).await,
            Command::Serve(args) => commands::serve::run(&cli.global, args).await,
        }
    });
    // Calls abandoned by a second Ctrl-C must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code.into(),
        Err(failure) => failure.report(),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "parallax=debug,parallax_runner=debug,parallax_store=debug,parallax_providers=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
