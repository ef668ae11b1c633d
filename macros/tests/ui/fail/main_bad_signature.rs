#[parallel::main]
fn not_async() {}

#[parallel::main]
async fn with_params(args: Vec<String>) {}

#[parallel::main]
async fn generic<T>() {}

fn main() {}
