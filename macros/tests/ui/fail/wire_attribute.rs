#[parallel::wire(result = u64)]
struct WithOptions;

#[parallel::wire]
#[derive(parallel::rkyv::Archive)]
struct ArchiveToo;

#[parallel::wire]
union Bits {
    a: u32,
    b: f32,
}

#[parallel::wire]
type Alias = u8;

fn main() {}
