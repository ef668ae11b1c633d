//! What the binary registered by name: actor types that may be spawned from
//! another node (`#[actor(spawn)]`) and functions another process may run
//! (`#[parallel::remote]`).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use crate::actor::{HandlerScope, Registry, RemoteActor, code, panic_text};
use crate::id::ActorId;
use crate::wire::{Buffer, RemoteFailure, WireType, decode_owned, encode, type_tag};

/// An actor type that can be spawned by name. Made by `#[actor(spawn)]`.
pub struct ActorFactory {
    name: &'static str,
    spawn: SpawnFn,
}

/// Starts an actor from its archived state, under a given id or a fresh one.
type SpawnFn = fn(&Registry, usize, Option<ActorId>, &[u8]) -> Result<ActorId, RemoteFailure>;

fn spawn_erased<A: RemoteActor + WireType>(
    registry: &Registry,
    mailbox: usize,
    id: Option<ActorId>,
    init: &[u8],
) -> Result<ActorId, RemoteFailure> {
    let actor = decode_owned::<A>(init).map_err(|e| RemoteFailure {
        location: None,
        code: code::INVALID,
        message: e.to_string(),
    })?;
    Ok(match id {
        Some(id) => {
            registry.start_as(id, actor, mailbox);
            id
        }
        None => registry.start(actor, mailbox).0,
    })
}

impl ActorFactory {
    /// The factory of `A`; the initial state travels as an archived `A`.
    pub const fn new<A: RemoteActor + WireType>() -> Self {
        Self {
            name: A::NAME,
            spawn: spawn_erased::<A>,
        }
    }

    /// The actor type's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts an actor from its archived initial state.
    pub fn spawn(
        &self,
        registry: &Registry,
        mailbox: usize,
        init: &[u8],
    ) -> Result<ActorId, RemoteFailure> {
        (self.spawn)(registry, mailbox, None, init)
    }

    /// Starts an actor from its archived initial state under a given id: a
    /// new incarnation of a supervised actor that keeps its address. Any
    /// earlier actor under that id on this registry is replaced.
    pub fn spawn_as(
        &self,
        registry: &Registry,
        mailbox: usize,
        id: ActorId,
        init: &[u8],
    ) -> Result<ActorId, RemoteFailure> {
        (self.spawn)(registry, mailbox, Some(id), init)
    }
}

inventory::collect!(ActorFactory);

/// The spawnable actor type whose name has this tag.
pub fn factory(tag: u64) -> Option<&'static ActorFactory> {
    static BY_TAG: OnceLock<HashMap<u64, &'static ActorFactory>> = OnceLock::new();
    BY_TAG
        .get_or_init(|| {
            inventory::iter::<ActorFactory>
                .into_iter()
                .map(|f| (type_tag(f.name), f))
                .collect()
        })
        .get(&tag)
        .copied()
}

/// A function another process of this binary may run. Made by `#[parallel::remote]`.
pub struct RemoteFn {
    name: fn() -> &'static str,
    invoke: fn(&[u8]) -> Result<Buffer, RemoteFailure>,
}

impl RemoteFn {
    /// A registration: the function's name (as `type_name` gives it) and a
    /// wrapper that decodes the arguments, runs it and encodes the result.
    pub const fn new(
        name: fn() -> &'static str,
        invoke: fn(&[u8]) -> Result<Buffer, RemoteFailure>,
    ) -> Self {
        Self { name, invoke }
    }

    /// The function's registered name.
    pub fn name(&self) -> &'static str {
        (self.name)()
    }

    /// Runs it on archived arguments.
    pub fn invoke(&self, args: &[u8]) -> Result<Buffer, RemoteFailure> {
        (self.invoke)(args)
    }
}

inventory::collect!(RemoteFn);

/// The registered function whose name has this tag.
pub fn remote_fn(tag: u64) -> Option<&'static RemoteFn> {
    static BY_TAG: OnceLock<HashMap<u64, &'static RemoteFn>> = OnceLock::new();
    BY_TAG
        .get_or_init(|| {
            inventory::iter::<RemoteFn>
                .into_iter()
                .map(|f| (type_tag(f.name()), f))
                .collect()
        })
        .get(&tag)
        .copied()
}

/// Decodes `Args`, runs `f`, encodes its result; a panic becomes a failure
/// that carries the panic message and where it happened.
pub fn invoke_remote<Args: WireType, R: WireType>(
    bytes: &[u8],
    f: impl FnOnce(Args) -> R,
) -> Result<Buffer, RemoteFailure> {
    let args = decode_owned::<Args>(bytes).map_err(|e| RemoteFailure {
        location: None,
        code: code::INVALID,
        message: e.to_string(),
    })?;
    // The panic hook notes where it panicked (when it is installed).
    let scope = HandlerScope::enter();
    let result = catch_unwind(AssertUnwindSafe(|| f(args))).map_err(|p| RemoteFailure {
        location: scope.seen().and_then(|s| s.location),
        code: code::PANICKED,
        message: panic_text(p.as_ref()),
    })?;
    drop(scope);
    encode(&result).map_err(|e| RemoteFailure {
        location: None,
        code: code::ENCODE,
        message: e.to_string(),
    })
}

/// A function that can be run on another process of the same binary: any
/// `fn` of up to six arguments marked `#[parallel::remote]`. The arguments
/// travel as a tuple.
pub trait RemoteCallable<Args>: Copy + 'static {
    /// What the function returns.
    type Output: WireType;
    /// The name the function is registered under.
    fn remote_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

macro_rules! callable {
    ($($a:ident),*) => {
        impl<F, R, $($a),*> RemoteCallable<($($a,)*)> for F
        where
            F: Fn($($a),*) -> R + Copy + 'static,
            R: WireType,
        {
            type Output = R;
        }
    };
}
callable!();
callable!(A1);
callable!(A1, A2);
callable!(A1, A2, A3);
callable!(A1, A2, A3, A4);
callable!(A1, A2, A3, A4, A5);
callable!(A1, A2, A3, A4, A5, A6);
