#[parallel::remote]
async fn fetch(key: String) -> Vec<u8> {
    key.into_bytes()
}

#[parallel::remote]
fn convert<T: Into<u64>>(value: T) -> u64 {
    value.into()
}

#[parallel::remote]
fn sum(values: impl Iterator<Item = u64>) -> u64 {
    values.sum()
}

#[parallel::remote]
fn length(text: &str) -> usize {
    text.len()
}

struct Service;

impl Service {
    #[parallel::remote]
    fn call(&self) {}
}

fn main() {}
