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

/// The C names and reasons of the fault bits are the library's, bit for bit.
#[test]
fn fault_strings_are_the_librarys() {
    use std::ffi::CStr;
    use usq_core::checks::{Fault, Faults};
    for f in Fault::ALL {
        // SAFETY: the functions return static NUL-terminated strings.
        let name = unsafe { CStr::from_ptr(usq_ffi::usq_fault_name(f as u32)) };
        let reason = unsafe { CStr::from_ptr(usq_ffi::usq_fault_reason(f as u32)) };
        assert_eq!((name.to_str().unwrap(), reason.to_str().unwrap()), (f.name(), f.reason()));
    }
    let both = Fault::GainLow as u32 | Fault::ContactLost as u32;
    let main = unsafe { CStr::from_ptr(usq_ffi::usq_fault_reason(both)) };
    assert_eq!(main.to_str().unwrap(), Faults(both).main().unwrap().reason());
    assert_eq!(unsafe { CStr::from_ptr(usq_ffi::usq_fault_name(3)) }.to_bytes(), b"");
    assert_eq!(unsafe { CStr::from_ptr(usq_ffi::usq_fault_reason(0)) }.to_bytes(), b"");
}
