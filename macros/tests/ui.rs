//! Compile tests: for each macro, programs that must build and run, and
//! programs whose errors must tell the user what to write instead.
//!
//! This crate's only dev-dependencies are `parallel` and trybuild, and the
//! cases are built against them: a case (or macro output) that names `rkyv`
//! or `actix` other than through `parallel` does not compile.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
