// Views, a fixed name, a hand-written lifecycle and a generic actor.

use parallel::actix;
use parallel::rkyv::{Archive, Deserialize, Serialize};
use parallel::{Actor, Message, Received, RemoteActor};

#[derive(Message, Archive, Serialize, Deserialize)]
#[rkyv(crate = parallel::rkyv)]
#[message(result = usize)]
struct Frame {
    bytes: Vec<u8>,
}

#[derive(Message, Archive, Serialize, Deserialize)]
#[rkyv(crate = parallel::rkyv)]
struct Reset;

#[derive(Actor)]
#[actor(messages(Reset), view(Frame), name = "demo.sink", lifecycle)]
enum Sink {
    Empty,
    Seen(usize),
}

impl actix::Actor for Sink {
    type Context = actix::Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        *self = Sink::Empty;
    }
}

impl actix::Handler<Frame> for Sink {
    type Result = usize;

    fn handle(&mut self, msg: Frame, _ctx: &mut Self::Context) -> usize {
        *self = Sink::Seen(msg.bytes.len());
        msg.bytes.len()
    }
}

impl actix::Handler<Received<Frame>> for Sink {
    type Result = usize;

    fn handle(&mut self, msg: Received<Frame>, _ctx: &mut Self::Context) -> usize {
        *self = Sink::Seen(msg.bytes.len());
        msg.bytes.len()
    }
}

impl actix::Handler<Reset> for Sink {
    type Result = ();

    fn handle(&mut self, _msg: Reset, _ctx: &mut Self::Context) {
        *self = Sink::Empty;
    }
}

#[derive(Actor)]
#[actor(messages(Reset))]
struct Pool<T: Unpin + 'static> {
    jobs: Vec<T>,
}

impl<T: Unpin + 'static> actix::Handler<Reset> for Pool<T> {
    type Result = ();

    fn handle(&mut self, _msg: Reset, _ctx: &mut Self::Context) {
        self.jobs.clear();
    }
}

fn main() {
    assert_eq!(<Sink as RemoteActor>::NAME, "demo.sink");
    assert_eq!(<Sink as RemoteActor>::ACCEPTS.len(), 2);
    assert_eq!(<Pool<u8> as RemoteActor>::ACCEPTS, &[<Reset as parallel::Message>::NAME]);
}
