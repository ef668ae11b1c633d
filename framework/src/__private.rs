//! Items the macros' generated code names. Not part of the public API.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

pub use actix;
pub use inventory;
pub use rkyv;

pub use crate::actor::{Drain, Inbound, drain, handle_plain, handle_view};
pub use crate::remote::{ActorFactory, RemoteFn, invoke_remote};

/// Runs the program's `async fn main` inside an actix System, with logs on
/// stderr filtered by `RUST_LOG` (default: warnings and errors).
///
/// A process started by `fork` does not run `main`: it connects back to its
/// parent and runs what the parent asks for. In the top process every child
/// is closed when `main` returns, fails or panics, and on Ctrl+C / SIGTERM.
///
/// It installs a panic hook, in this process and in every forked one, that
/// changes one thing: a panic inside an actor's handler — which the
/// framework catches, answers the asker with and logs as one error line
/// (message and `file:line`) — no longer also prints the standard panic
/// output. Every other panic goes to the hook that was installed before,
/// unchanged. With `RUST_BACKTRACE` set (not `0`) the hook is not
/// installed: handler panics then print their backtrace as any panic does.
pub fn run_main<F: std::future::Future>(fut: F) -> F::Output {
    init_logging();
    crate::actor::install_handler_panic_hook();
    if crate::process::is_child() {
        crate::process::child::run();
    }
    crate::cluster::worker::run_if_worker();
    crate::process::context::MAIN_RAN.store(true, std::sync::atomic::Ordering::Relaxed);
    let system = actix_rt::System::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        system.block_on(async {
            actix_rt::spawn(close_on_signal());
            let output = fut.await;
            crate::tree::close().await;
            output
        })
    }));
    match outcome {
        Ok(output) => output,
        Err(panic) => {
            crate::tree::close_now();
            resume_unwind(panic)
        }
    }
}

async fn close_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let code = tokio::select! {
        _ = int.recv() => 130,
        _ = term.recv() => 143,
    };
    crate::tree::close().await;
    std::process::exit(code);
}

fn init_logging() {
    // `PARALLEL_LOG`, else `RUST_LOG` (read with the rest of the environment).
    let filter = crate::config::environment()
        .log
        .as_deref()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: a log written to a file stays plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}
