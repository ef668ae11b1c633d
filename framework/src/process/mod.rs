//! Processes: the seed's `fork`, `nfork`, `exec`, `join`/`yield`,
//! `send`/`receive`, `sync` and `close` (lua-parallel), children on other
//! hosts through ssh with `addremote`, `calibrate` and `sfork`, and
//! shared-memory transfers between processes of one machine (the s3 design).
//!
//! Every process is a node; the parent and each child talk through
//! mailboxes addressed by id over the authenticated QUIC transport. A child
//! is this same program started again: `#[parallel::main]` sees that it is a
//! child and, instead of running `main`, connects back and waits for `exec`.
//!
//! ```ignore
//! #[parallel::remote]
//! fn worker() {
//!     loop {
//!         let m: String = parallel::yield_value().unwrap();
//!         if m == "break" { break }
//!         let t = parallel::parent().unwrap().receive::<Tensor<f32>>().unwrap();
//!         parallel::print!("received a tensor of norm {}", t.norm());
//!     }
//! }
//! #[parallel::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let children = parallel::nfork(4).await?;
//!     children.exec(worker, ()).await?;
//!     children.join("").await?;
//!     children.send(&Tensor::full(&[100, 100], 1.0f32)).await?;
//!     children.join("break").await?;
//!     Ok(())
//! }
//! ```

pub(crate) mod child;
pub(crate) mod child_handle;
pub(crate) mod error;
pub(crate) mod launch;
pub(crate) mod parent;
mod print;
pub(crate) mod protocol;

pub use crate::remote::value::{DEFAULT_SHM_THRESHOLD, Payload, set_shm_threshold, shm_threshold};
pub use child::{Parent, id, ip, is_child, parent, yield_value};
pub use child_handle::{Child, Children};
pub use error::{ForkError, ProcessError};
pub use parent::{
    CLOSE_TIMEOUT, DEFAULT_FORK_TIMEOUT, IntoPlacements, Placement, calibrate, children, close,
    fork, nchildren, nfork,
};
pub use print::prefix;
pub use protocol::tag_of;
