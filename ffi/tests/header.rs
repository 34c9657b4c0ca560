//! include/usq.h is what cbindgen generates from the current source. With
//! USQ_BLESS_HEADER=1 the test writes the fresh header instead of failing.

#[test]
fn checked_in_header_is_fresh() {
    let fresh = include_str!(concat!(env!("OUT_DIR"), "/usq.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/usq.h");
    if std::env::var_os("USQ_BLESS_HEADER").is_some() {
        std::fs::write(path, fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/usq.h is stale: regenerate it with USQ_BLESS_HEADER=1 cargo test --release -p usq-ffi --test header"
    );
}
