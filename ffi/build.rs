//! Generates the C header from the crate's `extern "C"` items into OUT_DIR; the `header`
//! test compares it with the checked-in include/usq.h.

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
    // The shared object answers to libusq.so.0; tract-linalg's assembly carries no
    // .note.GNU-stack, so ask for a non-executable stack explicitly.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libusq.so.0");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,noexecstack");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
}
