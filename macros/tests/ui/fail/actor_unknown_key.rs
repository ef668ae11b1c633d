#[derive(parallel::Actor)]
#[actor(message(Add))]
struct Counter;

fn main() {}
