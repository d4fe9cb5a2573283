//! `barq serve`: open the database with its maintenance loop, serve the HTTP API until SIGTERM
//! or Ctrl-C, then drain and close.

use std::sync::Arc;
use std::time::Duration;

use barq_core::{Error, ErrorKind, Result};
use barq_server::{AppState, ServerConfig};
use barq_storage::Database;

use crate::args::{Cli, ServeArgs};

pub fn serve(cli: &Cli, args: &ServeArgs) -> Result<()> {
    let settings = match &args.replica_of {
        None => barq_config::load(cli.config.as_deref())?,
        Some(url) => barq_config::load_with_store_url(cli.config.as_deref(), "--replica-of", url)?,
    };
    let db = match &args.replica_of {
        None => Arc::new(super::open_with(
            cli,
            true,
            true,
            args.advertise_url.clone(),
        )?),
        Some(url) => {
            let spec = barq_config::build_cold_store(&settings.storage, &cli.data_dir)?
                .ok_or_else(|| Error::invalid(format!("--replica-of {url:?} names no store")))?;
            let db = Database::builder(&cli.data_dir)
                .options(super::options(cli, &settings, true))
                .cold_store(spec)
                .open_replica(args.replica_poll_interval.0)?;
            Arc::new(db)
        }
    };
    let store = barq_config::describe(&settings.storage, &cli.data_dir);
    let config = ServerConfig {
        api_key: cli.api_key.clone().filter(|k| !k.is_empty()),
        admin_api_key: args.admin_api_key.clone().filter(|k| !k.is_empty()),
        max_body_bytes: usize::try_from(args.max_body_bytes.0).unwrap_or(usize::MAX),
        request_timeout: args.request_timeout.0,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("barq-http")
        .build()
        .map_err(|e| Error::io("start the server runtime", e))?;
    let state = AppState::new(Arc::clone(&db), config.clone());
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot listen on {}: {e}", args.listen),
            )
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("read the listening address", e))?;
        if !addr.ip().is_loopback() && config.api_key.is_none() {
            if config.admin_api_key.is_none() {
                tracing::warn!(%addr, "listening on a non-loopback address without BARQ_API_KEY: anyone who can reach it can read, write and drop data");
            } else {
                tracing::warn!(%addr, "listening on a non-loopback address without BARQ_API_KEY: anyone who can reach it can read and write data (admin routes need BARQ_ADMIN_API_KEY)");
            }
        }
        tracing::info!(
            listen = %format!("http://{addr}"),
            data_dir = %cli.data_dir.display(),
            cold_store = %store,
            replica = args.replica_of.is_some(),
            data_key = config.api_key.is_some(),
            admin_key = config.admin_api_key.is_some() || config.api_key.is_some(),
            "barq serve ready"
        );
        barq_server::serve(listener, state, shutdown_signal(), args.drain_timeout.0)
            .await
            .map_err(|e| Error::io("serve HTTP", e))
    });
    drop(runtime);
    close(db)?;
    served
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: no new requests; finishing those in flight");
}

/// Close the database once the last engine call holding it has ended; if one is still running
/// after a while (an abandoned timed-out request), fsync the WAL instead.
fn close(db: Arc<Database>) -> Result<()> {
    let mut db = db;
    for _ in 0..200 {
        match Arc::try_unwrap(db) {
            Ok(d) => {
                d.close()?;
                tracing::info!("database closed");
                return Ok(());
            }
            Err(shared) => db = shared,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!("an engine call is still running; fsyncing the write-ahead log and exiting");
    db.sync()
}
