// Remote functions: any argument patterns, with or without a return type.

#[parallel::remote]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[parallel::remote]
pub fn scale((x, y): (f64, f64), mut by: f64) -> Vec<f64> {
    by *= 2.0;
    vec![x * by, y * by]
}

#[parallel::remote]
fn tick() {}

mod inner {
    #[parallel::remote]
    pub(crate) fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

fn main() {
    assert_eq!(add(2, 3), 5);
    assert_eq!(scale((1.0, 2.0), 1.0), vec![2.0, 4.0]);
    tick();
    assert_eq!(inner::greet("x".into()), "hello x");
}
