// A spawnable actor with one message, written with the derives. Without a
// direct rkyv dependency, rkyv's derives are reached through `parallel` and
// told so with `#[rkyv(crate = ..)]`.

use parallel::rkyv::{Archive, Deserialize, Serialize};
use parallel::{Actor, Message, RemoteActor};

#[derive(Message, Archive, Serialize, Deserialize)]
#[rkyv(crate = parallel::rkyv)]
#[message(result = u64)]
struct Add(u64);

#[derive(Actor, Archive, Serialize, Deserialize)]
#[rkyv(crate = parallel::rkyv)]
#[actor(messages(Add), spawn)]
struct Counter {
    total: u64,
}

impl parallel::actix::Handler<Add> for Counter {
    type Result = u64;

    fn handle(&mut self, msg: Add, _ctx: &mut Self::Context) -> u64 {
        self.total += msg.0;
        self.total
    }
}

fn main() {
    assert_eq!(<Counter as RemoteActor>::ACCEPTS, &[<Add as parallel::Message>::NAME]);
    assert!(<Counter as RemoteActor>::NAME.ends_with("::Counter"));
}
