//! `parley devserver`: the pinned LiveKit server on 127.0.0.1 with fresh keys, until Ctrl-C
//! (`parley_devserver` runs it; this prints how to join it).

use std::time::Duration;

use anyhow::Context as _;

use crate::args::DevserverArgs;
use crate::exit::{ExitKind, Failure, fail};
use crate::stop;

/// Runs the dev server until Ctrl-C (or until it dies, which is a failure) and prints its details.
pub fn run(args: &DevserverArgs) -> Result<(), Failure> {
    let config = parley_devserver::DevServerConfig { port: args.port, ..Default::default() };
    let mut server = parley_devserver::DevServer::start(&config)
        .context("starting the LiveKit dev server")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    if args.json {
        let details = serde_json::json!({
            "url": server.url(),
            "http_url": server.http_url(),
            "api_key": server.api_key(),
            "api_secret": server.api_secret(),
            "log": server.log_path(),
        });
        println!("{details}");
    } else {
        println!("LiveKit dev server on {}", server.url());
        println!("  API key:    {}", server.api_key());
        println!("  API secret: {}", server.api_secret());
        println!("  log:        {}", server.log_path().display());
        println!("Join with:");
        println!(
            "  LIVEKIT_API_KEY={} LIVEKIT_API_SECRET=… parley join --url {} --room demo --identity me --tone 440",
            server.api_key(),
            server.url()
        );
        println!("Ctrl-C stops the server.");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            signal = stop::signal() => signal.map(|_| true),
            _ = watch_exit(&mut server) => Ok(false),
        }
    });
    let stopped_by_user = outcome.context("waiting for Ctrl-C").map_err(|error| fail(ExitKind::Failure, error))?;
    if !stopped_by_user {
        return Err(fail(
            ExitKind::Failure,
            anyhow::anyhow!("the LiveKit server exited; its log ends with: {}", server.log_tail(5)),
        ));
    }
    server.stop();
    Ok(())
}

async fn watch_exit(server: &mut parley_devserver::DevServer) {
    while server.is_running() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
