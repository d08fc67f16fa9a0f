//! `parallax serve`: the API, the event stream and the portal over the store; unless
//! `--no-runner`, a worker for every region of the catalog runs in the same process.
//! Ctrl-C or SIGTERM stops accepting requests, drains the runner (calls in flight finish
//! and are recorded) and exits 130.

use anyhow::anyhow;
use parallax_app::load;
use parallax_server::{AppState, Auth, Runner};

use crate::cli::{Global, ServeArgs};
use crate::exit::{Code, Failure, Outcome};

pub async fn run(global: &Global, args: &ServeArgs) -> Outcome {
    let catalog = load::catalog(&global.config)?;
    let env_token = std::env::var("PARALLAX_API_TOKEN").ok();
    let mut tokens =
        Auth::tokens_from(env_token.as_deref(), args.token_file.as_deref()).map_err(|e| Failure::input(anyhow!(e)))?;
    // No token configured: one is drawn for this process and shown once, as Jupyter does,
    // so that one command gives a service a browser can sign in to.
    let drawn = tokens.is_empty().then(|| {
        let token = parallax_server::auth::draw_token();
        tokens.push(parallax_server::auth::hash(&token));
        token
    });
    let session_key = std::env::var("PARALLAX_SESSION_KEY").ok().filter(|k| !k.is_empty());
    let auth = Auth::new(tokens, session_key.as_deref());
    let store = super::open_store(global).await?;
    let state = AppState::new(store.clone(), catalog.clone(), &global.config, auth, args.public_read);
    let runner = if args.no_runner {
        None
    } else {
        Some(Runner::start(store.clone(), &catalog, &global.config, args.concurrency, state.runner_state()).await?)
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| Failure::input(anyhow!("cannot listen on {}: {e}", args.addr)))?;
    let addr = listener.local_addr().map_err(|e| Failure::Internal(e.into()))?;
    if !global.quiet {
        eprintln!(
            "serving http://{addr}/ on the {} store{}{}",
            store.backend(),
            if args.no_runner { "; workers run the jobs" } else { "; jobs run in this process" },
            if args.public_read { "; reads are public" } else { "" }
        );
        if let Some(token) = &drawn {
            eprintln!(
                "no PARALLAX_API_TOKEN or --token-file: this process's token is {token}\n  sign in at http://{addr}/login, or send `Authorization: Bearer {token}`"
            );
        }
        eprintln!("Ctrl-C or SIGTERM stops it");
    }
    let (mut stop_rx, signals) = crate::signals::stop_on_signals(global.quiet);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s != parallax_runner::Stop::Running).await;
    };
    let served = parallax_server::serve(listener, state, shutdown).await;
    signals.abort();
    if let Some(runner) = runner {
        runner.stop();
        runner.join().await?;
    }
    served.map_err(|e| Failure::Internal(e.into()))?;
    Ok(Code::Interrupted)
}
