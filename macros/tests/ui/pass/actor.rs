// A spawnable actor with one message, as a user writes it.

use parallel::{Actor, Message, RemoteActor};

#[derive(Message, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[message(result = u64)]
struct Add(u64);

#[derive(Actor, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[actor(messages(Add), spawn)]
struct Counter {
    total: u64,
}

impl actix::Handler<Add> for Counter {
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
