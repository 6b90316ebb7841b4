//! The browser's exports, called natively: the same functions the wasm runs, so a failure here is
//! a failure of the page's verifier (the browser test then checks the compiled module itself).

use beaufort_wasm::{BenchFixture, ReceiptVerifier};

#[test]
fn the_measured_operations_compute_the_right_answers() {
    let fixture = BenchFixture::build(7, 5).expect("a committee");
    assert!(fixture.sign());
    assert!(fixture.verify_one());
    assert!(fixture.verify_certificate());
    assert!(fixture.load_members());
    assert!(BenchFixture::build(3, 4).is_err());
    assert!(BenchFixture::build(3, 0).is_err());
}

#[test]
fn a_network_that_is_not_one_is_refused_in_words() {
    let error = ReceiptVerifier::load("{\"name\": \"shops\"}")
        .err()
        .expect("no members");
    assert!(
        error
            .to_string()
            .starts_with("this is not a network description"),
        "{error}"
    );
}
