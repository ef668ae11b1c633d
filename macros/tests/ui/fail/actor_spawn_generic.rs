#[derive(parallel::Actor)]
#[actor(spawn)]
struct Pool<T: Unpin + 'static> {
    jobs: Vec<T>,
}

fn main() {}
