//! When a running command stops: on Ctrl-C or SIGTERM, or at the deadline `--duration` sets.

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
pub async fn signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Resolves at `deadline`, or never without one.
pub async fn at(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The deadline `seconds` from now (`--duration`), if given.
pub fn after(seconds: Option<f64>) -> Option<tokio::time::Instant> {
    seconds.map(|seconds| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(seconds))
}
