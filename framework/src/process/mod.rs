//! Processes: the seed's `fork`, `nfork`, `exec`, `join`/`yield`,
//! `send`/`receive`, `sync` and `close` (lua-parallel), as actors.
//!
//! Every process of a tree is a node, and every process is an actor
//! addressed by id: a child runs a [`ProcessActor`], and the tree's parent
//! runs one [`ParentActor`] for all its children. Everything they say to
//! each other is one of the typed rkyv messages of [`message`], sent with
//! `ActorRef::tell`/`ask` over the authenticated QUIC transport. A child is
//! this same program started again: `#[parallel::main]` sees that it is a
//! child and, instead of running `main`, connects back, starts its process
//! actor and waits for `Exec`. The function then runs on a thread of its
//! own, where the seed's blocking calls (`yield_value`, `parent().send`)
//! belong.
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

mod calibrate;
pub(crate) mod child;
pub(crate) mod context;
mod error;
mod handle;
pub(crate) mod link;
pub mod message;
mod parent_actor;
mod print;
mod process_actor;
mod shared;
pub(crate) mod spawn;

pub use crate::remote::value::{DEFAULT_SHM_THRESHOLD, Payload};
pub use calibrate::kernel_seconds;
pub use child::{Parent, id, ip, is_child, parent, yield_value};
pub use context::{CLOSE_TIMEOUT, Tree};
pub use error::{ForkError, ProcessError};
pub use handle::{Child, Children, Execution, Executions};
pub use message::SEND_WINDOW;
pub use parent_actor::ParentActor;
pub(crate) use print::Capture;
pub use print::{prefix, print_line};
pub use process_actor::ProcessActor;
pub use spawn::{Exit, IntoPlacements, LaunchSpec, Launched, Launcher, Placement, start};
