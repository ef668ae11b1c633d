//! Compile tests: for each macro, programs that must build and run, and
//! programs whose errors must tell the user what to write instead.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
