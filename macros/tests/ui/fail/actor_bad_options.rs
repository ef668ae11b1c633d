#[derive(parallel::Actor)]
#[actor(spawn = true)]
struct Flagged;

#[derive(parallel::Actor)]
#[actor(messages = Add)]
struct NotAList;

#[derive(parallel::Actor)]
#[actor(name = counter)]
struct BareName;

#[derive(parallel::Actor)]
#[actor(messages(Add), view(Add))]
struct Twice;

#[derive(parallel::Actor)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
