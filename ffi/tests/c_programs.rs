//! Builds the C programs with the system C compiler against libusq, as a customer would
//! (the checked-in header, the static and the shared library), and runs them: the API test,
//! the firmware loop example, a malloc-counting interposer around it, and a check that the
//! linked programs do not get an executable stack.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// target/<profile>/deps/, beside this test: cargo rebuilds libusq_ffi.a and libusq_ffi.so there
/// before running the tests (it does not always copy them up to target/<profile>/).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// Runs a built program, through the cross runner when one is set.
fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let runner = std::env::var("USQ_TEST_RUNNER").ok();
    let mut parts = runner.as_deref().map(|r| r.split_whitespace().map(String::from).collect()).unwrap_or(vec![]);
    parts.push(program.display().to_string());
    let mut cmd = Command::new(&parts[0]);
    cmd.args(&parts[1..]).args(args).current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the program runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

enum Link {
    Static,
    Shared,
}

/// Installs the freshly built libraries into `dir/prefix` with ffi/install.sh, as a
/// customer's build would find them (pkg-config), once per test.
fn install(dir: &Path) -> PathBuf {
    let prefix = dir.join("prefix");
    if !prefix.join("lib/pkgconfig/usq.pc").exists() {
        let o = Command::new("bash")
            .arg(repo().join("ffi/install.sh"))
            .arg(&prefix)
            .arg(lib_dir())
            .output()
            .expect("bash runs");
        assert!(o.status.success(), "install.sh: {}", text(&o));
    }
    prefix
}

/// `pkg-config --cflags --libs <package>` against an installed prefix.
fn pkg_config(prefix: &Path, package: &str) -> Vec<String> {
    let o = Command::new("pkg-config")
        .args(["--cflags", "--libs", package])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config runs");
    assert!(o.status.success(), "pkg-config {package}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap().split_whitespace().map(String::from).collect()
}

fn build(source: &str, name: &str, link: Link, dir: &Path) -> PathBuf {
    let prefix = install(dir);
    let out = dir.join(name);
    let mut cmd = Command::new(cc());
    cmd.args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"]).arg(&out).arg(repo().join(source));
    match link {
        Link::Static => cmd.args(pkg_config(&prefix, "usq-static")),
        Link::Shared => {
            cmd.args(pkg_config(&prefix, "usq")).arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        }
    };
    cmd.arg("-lm");
    let o = cmd.output().expect("the C compiler runs");
    assert!(o.status.success(), "building {source}: {}", text(&o));
    out
}

fn golden_ulpips(reference: &str, image: &str) -> f64 {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/golden/golden.json")).unwrap()).unwrap();
    g["ulpips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["ref"] == reference && u["img"] == image)
        .and_then(|u| u["ulpips"].as_f64())
        .unwrap()
}

fn seeded() -> String {
    repo().join("models/tinyusfm-seeded.onnx").display().to_string()
}

#[test]
fn api_test_static_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let (r, i) = ("tests/fixtures/sim_linear_640x480.png", "tests/fixtures/sim_linear_640x480_blur.png");
    let expected = golden_ulpips(r, i).to_string();
    for (link, name) in [(Link::Static, "api_static"), (Link::Shared, "api_shared")] {
        let exe = build("ffi/tests/c/api_test.c", name, link, dir.path());
        let o = run(&exe, &[&seeded(), "tests/fixtures/manifold", r, i, &expected], &[]);
        assert!(o.status.success() && text(&o).contains("ALL OK"), "{name}: {}", text(&o));
    }
}

/// A folder of real frames if the shared data is here, else the project's simulated clip.
fn clip_dir(tmp: &Path) -> PathBuf {
    let hc18 = repo().join("../shared/data/hc18/images");
    let clip = tmp.join("clip");
    std::fs::create_dir_all(&clip).unwrap();
    if hc18.is_dir() {
        for n in 600..630 {
            let f = hc18.join(format!("{n:03}_HC.png"));
            if f.exists() {
                std::os::unix::fs::symlink(&f, clip.join(f.file_name().unwrap())).unwrap();
            }
        }
    } else {
        eprintln!("SKIPPED real frames: ../shared/data/hc18 is absent, using the simulated fixture");
        std::os::unix::fs::symlink(repo().join("tests/fixtures/sim_sector_800x540.png"), clip.join("a.png")).unwrap();
    }
    clip
}

fn result_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("frame=")).collect()
}

#[test]
fn firmware_loop_scores_a_clip_static_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let clip = clip_dir(dir.path());
    for (link, name) in [(Link::Static, "fw_static"), (Link::Shared, "fw_shared")] {
        let exe = build("ffi/firmware_loop.c", name, link, dir.path());
        let o = run(&exe, &[clip.to_str().unwrap(), "--frames", "45", "--fps", "30", "--budget-ms", "33"], &[]);
        let out = text(&o);
        assert!(o.status.success(), "{name}: {out}");
        let lines = result_lines(&out);
        assert!(!lines.is_empty(), "{name}: no results: {out}");
        for l in &lines {
            let nrq: f64 = l.split(" nrq=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            assert!(nrq.is_finite(), "{l}");
        }
        let stats = out.lines().find(|l| l.starts_with("stats ")).expect("a stats line");
        assert!(stats.contains("pushed=45") && stats.contains("pool_fallbacks=0"), "{stats}");
        eprintln!("{name}: {} results; {stats}", lines.len());
    }
    // Raw GRAY8 input and zero-copy pushes.
    let raw = dir.path().join("clip.gray");
    let f = usq_frame(&repo().join("tests/fixtures/sim_small_200x150.png"));
    std::fs::write(&raw, [f.clone(), f].concat()).unwrap();
    let exe = dir.path().join("fw_static");
    let o =
        run(&exe, &[raw.to_str().unwrap(), "--size", "200x150", "--frames", "10", "--fps", "30", "--zero-copy"], &[]);
    assert!(o.status.success() && out_has_results(&o), "{}", text(&o));
    // Bad input: a clear message and a non-zero exit.
    let o = run(&exe, &["/no/such/dir", "--frames", "3", "--fps", "30"], &[]);
    assert!(!o.status.success() && text(&o).contains("/no/such/dir"), "{}", text(&o));
    let o = run(&exe, &[clip.to_str().unwrap(), "--frames", "3", "--fps", "30", "--model", "/no/model.onnx"], &[]);
    assert!(!o.status.success() && text(&o).contains("USQ_ERR_IO"), "{}", text(&o));
}

fn out_has_results(o: &Output) -> bool {
    !result_lines(&String::from_utf8_lossy(&o.stdout)).is_empty()
}

/// Gray bytes of an image, decoded by the C API's own loader through the shared library.
fn usq_frame(path: &Path) -> Vec<u8> {
    let img = image::open(path).unwrap().to_luma8();
    img.into_raw()
}

fn malloc_calls(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("malloc_count:")).expect("the interposer reports");
    line.split_whitespace()
        .filter(|kv| {
            kv.starts_with("malloc=")
                || kv.starts_with("calloc=")
                || kv.starts_with("realloc=")
                || kv.starts_with("memalign=")
        })
        .map(|kv| kv.split('=').nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn no_malloc_after_warm_up() {
    if std::env::var_os("USQ_TEST_RUNNER").is_some() {
        eprintln!("SKIPPED: LD_PRELOAD interposition is not checked under an emulator");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = clip_dir(dir.path());
    let exe = build("ffi/firmware_loop.c", "fw_count", Link::Static, dir.path());
    let so = dir.path().join("malloc_count.so");
    let o = Command::new(cc())
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(repo().join("ffi/tests/c/malloc_count.c"))
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // One encoder, then two (a helper thread shares each frame's patches).
    for threads in ["1", "2"] {
        let mut calls = vec![];
        for frames in ["50", "250"] {
            // A generous budget keeps each run's work the same per frame; fps high enough to be quick.
            let args =
                [clip.to_str().unwrap(), "--frames", frames, "--fps", "200", "--budget-ms", "33", "--threads", threads];
            let o = run(&exe, &args, &[("LD_PRELOAD", so.to_str().unwrap())]);
            let err = String::from_utf8_lossy(&o.stderr).to_string();
            assert!(o.status.success(), "{}", text(&o));
            calls.push(malloc_calls(&err));
            eprintln!("{threads} threads, {frames} frames: {} allocator calls ({})", calls.last().unwrap(), err.trim());
        }
        assert_eq!(calls[0], calls[1], "{threads} threads: frames 51..250 called the C allocator");
    }
}

/// Whether binutils' readelf is here (a test that needs it says SKIPPED otherwise).
fn has_readelf() -> bool {
    let found = Command::new("readelf").arg("--version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: readelf is not installed");
    }
    found
}

/// The soname this version must carry: the major version, or 0.y while the major is 0.
fn soname() -> String {
    let (major, minor) = (env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"));
    if major == "0" { format!("libusq.so.0.{minor}") } else { format!("libusq.so.{major}") }
}

#[test]
fn the_shared_library_carries_its_soname() {
    if !has_readelf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = install(dir.path());
    let o = Command::new("readelf").args(["-dW"]).arg(prefix.join("lib/libusq.so")).output().unwrap();
    let dynamic = String::from_utf8_lossy(&o.stdout);
    let want = format!("[{}]", soname());
    assert!(dynamic.lines().any(|l| l.contains("SONAME") && l.contains(&want)), "no SONAME {want} in:\n{dynamic}");
}

#[test]
fn linked_programs_have_no_executable_stack() {
    if !has_readelf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = build("ffi/firmware_loop.c", "fw_stack", Link::Static, dir.path());
    for file in [exe, dir.path().join(format!("prefix/lib/{}", soname()))] {
        let o = Command::new("readelf").args(["-lW"]).arg(&file).output().unwrap();
        let stack = String::from_utf8_lossy(&o.stdout).lines().find(|l| l.contains("GNU_STACK")).map(String::from);
        let stack = stack.unwrap_or_else(|| panic!("{}: no GNU_STACK header", file.display()));
        assert!(!stack.contains("RWE"), "{}: executable stack: {stack}", file.display());
    }
}
