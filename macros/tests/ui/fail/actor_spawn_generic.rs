#[derive(parallel::Actor, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[actor(spawn)]
struct Pool<T: Unpin + 'static> {
    jobs: Vec<T>,
}

fn main() {}
