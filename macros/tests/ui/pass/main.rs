// `#[parallel::main]` runs an async body inside the actor system.

use parallel::actix::{self, Actor as _};

#[parallel::message(result = u64)]
struct Add(u64);

#[derive(parallel::Actor)]
#[actor(messages(Add))]
struct Counter(u64);

impl actix::Handler<Add> for Counter {
    type Result = u64;

    fn handle(&mut self, msg: Add, _ctx: &mut Self::Context) -> u64 {
        self.0 += msg.0;
        self.0
    }
}

/// Starts a counter and asks it twice.
#[parallel::main]
async fn main() -> Result<(), actix::MailboxError> {
    let counter = Counter(0).start();
    counter.send(Add(2)).await?;
    let total = counter.send(Add(3)).await?;
    assert_eq!(total, 5);
    Ok(())
}
