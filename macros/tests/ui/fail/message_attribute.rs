#[parallel::message(reply = u64)]
struct UnknownKey;

#[parallel::message(result)]
struct MissingValue;

#[parallel::message(result = u64)]
#[message(name = "demo.add")]
struct HelperToo(u64);

#[parallel::message(result = u64)]
#[derive(parallel::Message)]
struct DerivedToo(u64);

#[parallel::message]
#[derive(Debug, parallel::rkyv::Archive)]
struct RkyvToo;

#[parallel::message]
#[parallel::message]
struct Twice;

#[parallel::message]
struct Generic<T>(T);

#[parallel::message]
union Bits {
    a: u32,
    b: f32,
}

#[parallel::message]
fn not_a_type() {}

fn main() {}
