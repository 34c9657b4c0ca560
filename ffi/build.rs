//! Generates the C header from the crate's `extern "C"` items into OUT_DIR; the `header`
//! test compares it with the checked-in include/usq.h.

/// The C ABI's version, as in the soname.
fn abi_version() -> String {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets the version");
    if major == "0" { format!("0.{minor}") } else { major }
}

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("usq.h");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml")).expect("ffi/cbindgen.toml");
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write_to_file(out);
    // The shared object answers to libusq.so.<ABI>: the major version, or for 0.y versions
    // "0.y" (every 0.y may break the C ABI). tract-linalg's assembly carries no
    // .note.GNU-stack, so ask for a non-executable stack explicitly.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libusq.so.{}", abi_version());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,noexecstack");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
}
