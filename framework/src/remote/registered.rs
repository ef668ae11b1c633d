//! What the binary registered by name: actor types that may be spawned from
//! another node (`#[actor(spawn)]`) and functions another process may run
//! (`#[parallel::remote]`).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use super::node::NodeInner;
use crate::actor::{DeviceChoice, HandlerScope, RemoteActor, code, panic_text};
use crate::id::ActorId;
use crate::wire::{Buffer, RemoteFailure, WireType, decode_owned, encode, type_tag};

/// An actor type that can be spawned by name. Made by `#[actor(spawn)]`.
pub struct ActorFactory {
    name: &'static str,
    spawn: SpawnFn,
}

/// Starts an actor from its archived state, under a given id or a fresh
/// one; gives its id and, for a GPU actor, its device.
type SpawnFn = fn(
    &NodeInner,
    Option<ActorId>,
    DeviceChoice,
    &[u8],
) -> Result<(ActorId, Option<u32>), RemoteFailure>;

fn decode_init<A: RemoteActor + WireType>(init: &[u8]) -> Result<A, RemoteFailure> {
    decode_owned::<A>(init).map_err(|e| RemoteFailure {
        location: None,
        code: code::INVALID,
        message: e.to_string(),
    })
}

fn spawn_erased<A: RemoteActor + WireType>(
    node: &NodeInner,
    id: Option<ActorId>,
    _: DeviceChoice,
    init: &[u8],
) -> Result<(ActorId, Option<u32>), RemoteFailure> {
    let (actor, id) = (decode_init::<A>(init)?, id.unwrap_or_default());
    node.registry.start_as(id, actor, node.mailbox);
    Ok((id, None))
}

fn spawn_pinned<A: RemoteActor + WireType + Send>(
    node: &NodeInner,
    id: Option<ActorId>,
    choice: DeviceChoice,
    init: &[u8],
) -> Result<(ActorId, Option<u32>), RemoteFailure> {
    let (actor, id) = (decode_init::<A>(init)?, id.unwrap_or_default());
    let (_, _, ordinal) = node
        .start_pinned(id, actor, choice)
        .map_err(|e| RemoteFailure {
            location: None,
            code: code::NO_DEVICE,
            message: e.to_string(),
        })?;
    Ok((id, Some(ordinal)))
}

/// The device a spawn request asks for, in its header's flags: 0 for any
/// GPU, `ordinal + 1` for one (so ordinals up to 254 can be asked for).
pub(crate) fn device_flags(choice: DeviceChoice) -> Result<u8, u32> {
    match choice {
        DeviceChoice::AnyGpu => Ok(0),
        DeviceChoice::Gpu(n) => u8::try_from(n + 1).map_err(|_| n),
    }
}

/// The device a spawn request's flags ask for (see [`device_flags`]).
pub(crate) fn device_choice(flags: u8) -> DeviceChoice {
    match flags {
        0 => DeviceChoice::AnyGpu,
        n => DeviceChoice::Gpu(u32::from(n) - 1),
    }
}

impl ActorFactory {
    /// The factory of `A`; the initial state travels as an archived `A`.
    pub const fn new<A: RemoteActor + WireType>() -> Self {
        Self {
            name: A::NAME,
            spawn: spawn_erased::<A>,
        }
    }

    /// The factory of an `#[actor(gpu)]` type: it starts on a thread pinned
    /// to a device of the node that spawns it.
    pub const fn pinned<A: RemoteActor + WireType + Send>() -> Self {
        Self {
            name: A::NAME,
            spawn: spawn_pinned::<A>,
        }
    }

    /// The actor type's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts an actor on `node` from its archived initial state, under
    /// `id` (a new incarnation of a supervised actor that keeps its
    /// address; any earlier actor under that id is replaced) or a fresh
    /// id; a GPU actor on the device `choice` names.
    pub(crate) fn spawn(
        &self,
        node: &NodeInner,
        id: Option<ActorId>,
        choice: DeviceChoice,
        init: &[u8],
    ) -> Result<(ActorId, Option<u32>), RemoteFailure> {
        (self.spawn)(node, id, choice, init)
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
