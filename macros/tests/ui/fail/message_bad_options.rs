#[derive(parallel::Message)]
#[message(reply = u64)]
struct UnknownKey;

#[derive(parallel::Message)]
#[message(result)]
struct MissingValue;

#[derive(parallel::Message)]
#[message(result = "Vec<")]
struct BadString;

#[derive(parallel::Message)]
union Bits {
    a: u32,
    b: f32,
}

#[derive(parallel::Message)]
struct Generic<T>(T);

fn main() {}
