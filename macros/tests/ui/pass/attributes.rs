// The one-line forms with every option, next to the attributes a user may
// add: other derives before or after, `#[rkyv(..)]` options, doc comments.

use std::time::Instant;

use parallel::actix::Actor as _;
use parallel::prelude::*;
use parallel::{RemoteActor, wire};

/// A message with a fixed name and its reply type written as a string.
#[derive(Debug, Clone, PartialEq)]
#[parallel::message(result = "Option<u64>", name = "demo.lookup")]
#[rkyv(derive(Debug))]
enum Lookup {
    ById(u64),
    ByName(String),
}

/// A message without options replies `()`.
#[parallel::message]
struct Reset;

#[parallel::message(result = usize)]
struct Frame {
    bytes: Vec<u8>,
}

/// A spawnable actor: its value is archived, so `#[parallel::actor]` derives
/// rkyv's traits for it.
#[parallel::actor(messages(Lookup, Reset), view(Frame), spawn, name = "demo.index")]
#[derive(Default)]
struct Index {
    keys: Vec<u64>,
    seen: usize,
}

impl Handler<Lookup> for Index {
    type Result = Option<u64>;

    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Option<u64> {
        match msg {
            Lookup::ById(id) => self.keys.iter().copied().find(|k| *k == id),
            Lookup::ByName(name) => Some(name.len() as u64),
        }
    }
}

impl Handler<Reset> for Index {
    type Result = ();

    fn handle(&mut self, _: Reset, _: &mut Context<Self>) {
        self.keys.clear();
    }
}

impl Handler<Frame> for Index {
    type Result = usize;

    fn handle(&mut self, msg: Frame, _: &mut Context<Self>) -> usize {
        self.seen += msg.bytes.len();
        self.seen
    }
}

impl Handler<Received<Frame>> for Index {
    type Result = usize;

    fn handle(&mut self, msg: Received<Frame>, _: &mut Context<Self>) -> usize {
        self.seen += msg.bytes.len();
        self.seen
    }
}

/// Not spawnable, so no rkyv derives: its fields need not be archivable.
#[derive(Debug)]
#[parallel::actor(messages(Reset), lifecycle)]
struct Clock {
    started: Option<Instant>,
}

impl Actor for Clock {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.started = Some(Instant::now());
    }
}

impl Handler<Reset> for Clock {
    type Result = ();

    fn handle(&mut self, _: Reset, _: &mut Context<Self>) {
        self.started = None;
    }
}

/// A generic actor (not spawnable).
#[parallel::actor(messages(Reset))]
struct Pool<T: Unpin + 'static> {
    jobs: Vec<T>,
}

impl<T: Unpin + 'static> Handler<Reset> for Pool<T> {
    type Result = ();

    fn handle(&mut self, _: Reset, _: &mut Context<Self>) {
        self.jobs.clear();
    }
}

/// A plain wire type, imported by name; generic is fine.
#[wire]
#[derive(Debug, PartialEq)]
struct Pair<T> {
    left: T,
    right: T,
}

/// An item that names rkyv's crate path itself keeps it.
#[parallel::wire]
#[rkyv(crate = parallel::rkyv, derive(Debug))]
struct Named(u8);

fn reply<M: parallel::actix::Message<Result = R>, R>() {}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    reply::<Lookup, Option<u64>>();
    reply::<Reset, ()>();
    assert_eq!(<Lookup as Message>::NAME, "demo.lookup");
    assert_eq!(<Index as RemoteActor>::NAME, "demo.index");
    assert_eq!(
        <Index as RemoteActor>::ACCEPTS,
        &["demo.lookup", <Reset as Message>::NAME, <Frame as Message>::NAME]
    );
    assert_eq!(<Clock as RemoteActor>::ACCEPTS, &[<Reset as Message>::NAME]);
    assert_eq!(<Pool<String> as RemoteActor>::ACCEPTS.len(), 1);

    let bytes = parallel::wire::encode(&Index { keys: vec![7, 9], seen: 0 })?;
    let index: Index = parallel::wire::decode_owned(&bytes)?;
    assert_eq!(index.keys, [7, 9]);
    let bytes = parallel::wire::encode(&Lookup::ByName("ab".into()))?;
    let lookup: Lookup = parallel::wire::decode_owned(&bytes)?;
    assert_eq!(lookup, Lookup::ByName("ab".into()));
    let archived = parallel::wire::decode::<Lookup>(&bytes)?;
    assert!(format!("{archived:?}").contains("ab"));
    let bytes = parallel::wire::encode(&Pair { left: 1u32, right: 2 })?;
    assert_eq!(parallel::wire::decode_owned::<Pair<u32>>(&bytes)?, Pair { left: 1, right: 2 });
    let bytes = parallel::wire::encode(&Named(3))?;
    assert_eq!(parallel::wire::decode_owned::<Named>(&bytes)?.0, 3);

    let index = Index::default().start();
    assert_eq!(index.send(Frame { bytes: vec![0; 3] }).await?, 3);
    assert_eq!(index.send(Lookup::ByName("abc".into())).await?, Some(3));
    let clock = Clock { started: None }.start();
    clock.send(Reset).await?;
    Ok(())
}
