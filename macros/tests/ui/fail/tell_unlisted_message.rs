use parallel::prelude::*;

#[parallel::message(result = ())]
struct Listed;

#[parallel::message(result = ())]
struct AlsoListed;

#[parallel::message(result = ())]
struct Unlisted;

// A handler is not enough: an `ActorRef` sends only what the actor lists.
#[parallel::actor(messages(Listed, AlsoListed))]
#[derive(Default)]
struct Counter;

impl Handler<Listed> for Counter {
    type Result = ();
    fn handle(&mut self, _: Listed, _: &mut Context<Self>) {}
}

impl Handler<AlsoListed> for Counter {
    type Result = ();
    fn handle(&mut self, _: AlsoListed, _: &mut Context<Self>) {}
}

impl Handler<Unlisted> for Counter {
    type Result = ();
    fn handle(&mut self, _: Unlisted, _: &mut Context<Self>) {}
}

async fn send(counter: ActorRef<Counter>) {
    let _ = counter.tell(Unlisted).await;
}

fn main() {}
