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

/// `tests/ui/pass/readme.rs` is the README's example, so `ui` proves that a
/// crate depending on `parallel` alone builds and runs it.
#[test]
fn readme_case_is_the_readme() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## In twenty lines")
        .nth(1)
        .expect("the README has an \"In twenty lines\" section");
    let example = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n").next())
        .expect("the section holds a ```rust block");
    let case = include_str!("ui/pass/readme.rs");
    let code = case
        .split_once("\n\n")
        .map(|(header, code)| {
            assert!(
                header.lines().all(|l| l.starts_with("//")),
                "header: {header}"
            );
            code
        })
        .expect("the case is a comment, a blank line, then the example");
    assert_eq!(
        code, example,
        "tests/ui/pass/readme.rs differs from the README's example: copy the README's block \
         after the case's header comment"
    );
}
