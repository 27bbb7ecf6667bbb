//! Compile-time checks of `#[stateful_function]`: correct uses compile, and
//! each misuse fails with the macro's own message pointing at the offending
//! token. Regenerate the expected output with `TRYBUILD=overwrite`.

#[test]
fn macros_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
