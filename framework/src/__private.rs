//! Items the macros' generated code names. Not part of the public API.

pub use actix;
pub use inventory;

pub use crate::actor::{Deliver, Inbound, deliver, dispatch_plain, dispatch_view};
pub use crate::remote::{ActorFactory, RemoteFn, invoke_remote};

/// Runs the program's `async fn main` inside an actix System, with logs on
/// stderr filtered by `RUST_LOG` (default: warnings and errors).
pub fn run_main<F: std::future::Future>(fut: F) -> F::Output {
    init_logging();
    actix_rt::System::new().block_on(fut)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
