//! `alice-realtime`: run the server (the default), or print a token for testing.

use std::process::ExitCode;
use std::time::Duration;

use alice_shell::config::Settings;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The command line; every setting is also an environment variable, listed by `--help`
/// (`alice_shell::variables`).
#[derive(Parser)]
#[command(
    name = "alice-realtime",
    version,
    about = "The Alice Realtime Socket.IO event server",
    after_help = "Every option is also read from the environment variable it names (see .env.example)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (what happens with no command).
    Serve,
    /// Apply the PostgreSQL migrations of DATABASE_URL and exit.
    Migrate,
    /// Print an HS256 token signed with JWT_SECRET.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// reader, consultant or admin.
        #[arg(long)]
        role: String,
        /// How long it is valid, such as 30m, 1h or 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

fn main() -> ExitCode {
    if let Some(name) = alice_shell::variables::not_text() {
        eprintln!("alice-realtime: {name} is not valid UTF-8 text");
        return ExitCode::from(2);
    }
    let matches = alice_shell::variables::with_variables(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let settings = match Settings::from_matches(&matches) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("alice-realtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Token { sub, role, ttl } => {
            if settings.auth.dev_mode {
                eprintln!("alice-realtime: set JWT_SECRET to sign tokens the server will accept");
                return ExitCode::from(2);
            }
            if alice_core::Role::parse(&role).is_none() {
                eprintln!("alice-realtime: --role must be reader, consultant or admin");
                return ExitCode::from(2);
            }
            println!("{}", alice_shell::auth::sign_for(&settings.auth, &sub, &role, ttl));
            ExitCode::SUCCESS
        }
        Cmd::Serve => serve(settings),
        Cmd::Migrate => migrate(settings),
    }
}

fn serve(settings: Settings) -> ExitCode {
    init_tracing(&settings);
    let runtime = match runtime(settings.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("alice-realtime: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if settings.auth.dev_mode {
            announce_dev_mode(&settings);
        }
        let running = match alice_shell::start(settings).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                eprintln!("alice-realtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections, flushing the queue");
        let stopped = running.shutdown().await;
        if stopped.dead_letters > 0 {
            tracing::warn!(
                dead_letters = stopped.dead_letters,
                "dead letters are kept for the next start; replay them with POST /admin/dlq/replay"
            );
        }
        if stopped.unstored > 0 {
            tracing::error!(unstored = stopped.unstored, "stopped with events not yet stored");
            return ExitCode::FAILURE;
        }
        tracing::info!(dead_letters = stopped.dead_letters, "stopped cleanly");
        ExitCode::SUCCESS
    })
}

fn migrate(settings: Settings) -> ExitCode {
    init_tracing(&settings);
    let url = settings.database_url.as_deref().unwrap_or("");
    if !url.starts_with("postgres") {
        eprintln!(
            "alice-realtime: migrate needs DATABASE_URL=postgres://… (SQLite creates its schema itself)"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("alice-realtime: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let result = match alice_shell::postgres_store(&settings) {
            Ok(store) => store.migrate().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                println!("migrations applied");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("alice-realtime: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// One thread runs everything unless `WORKER_THREADS` asks for more: the core is single-threaded,
/// and on one thread no delivery pays for waking another.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
}

fn announce_dev_mode(settings: &Settings) {
    let day = Duration::from_secs(24 * 3600);
    let reader = alice_shell::auth::sign_for(&settings.auth, "dev-reader", "reader", day);
    let consultant = alice_shell::auth::sign_for(&settings.auth, "dev-consultant", "consultant", day);
    let admin = alice_shell::auth::sign_for(&settings.auth, "dev-admin", "admin", day);
    tracing::warn!(
        "development mode: no JWT_SECRET or JWKS configured; a random secret was made for this run \
         and the server listens on loopback only"
    );
    // At warn level, so they show whatever LOG_LEVEL is (short of off).
    tracing::warn!(token = %reader, "development reader token (sub dev-reader, 24h)");
    tracing::warn!(token = %consultant, "development consultant token (sub dev-consultant, 24h)");
    tracing::warn!(token = %admin, "development admin token (sub dev-admin, 24h)");
}

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if settings.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
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
