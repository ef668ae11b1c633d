#[parallel::actor(message(Add))]
struct UnknownKey;

#[parallel::actor(spawn)]
struct Generic<T: Unpin + 'static>(Vec<T>);

#[parallel::actor(spawn)]
#[actor(name = "demo.counter")]
struct HelperToo;

#[parallel::actor]
#[derive(parallel::Actor)]
struct DerivedToo;

#[parallel::actor(spawn)]
#[derive(parallel::rkyv::Archive, parallel::rkyv::Serialize)]
struct RkyvToo;

#[parallel::actor]
impl Clone for UnknownKey {
    fn clone(&self) -> Self { UnknownKey }
}

fn main() {}
