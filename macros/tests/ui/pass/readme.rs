// The README's "In twenty lines" example, verbatim (`readme_case_is_the_readme`
// checks). This crate's only dependency besides trybuild is `parallel`, so it
// builds and runs only if the macros need nothing else.

use parallel::prelude::*; // the only dependency: `parallel`

#[parallel::actor(messages(Add), spawn)]
struct Counter { total: u64 }

#[parallel::message(result = u64)]
struct Add(u64);

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 { self.total += n; self.total }
}

#[parallel::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let here = Node::builder().password(Password::new("s3cret".into())).start().await?;
    let there = Node::builder().password(Password::new("s3cret".into())).allow::<Counter>().start().await?;
    let counter = here.join(&there.join_line()).await?.spawn(Counter { total: 0 }).await?; // over QUIC
    counter.tell(Add(2)).await?;
    assert_eq!(counter.ask(Add(40)).await?, 42);
    Ok(())
}
