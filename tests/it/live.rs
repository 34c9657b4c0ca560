//! `usq live --input`: frames played through the live engine, as plain lines, JSON lines and a
//! CSV record, from a folder, a .y4m video, raw GRAY8 and a DICOM cine; and its bad inputs.

use crate::common::*;
use std::process::Output;

fn live(args: &[&str]) -> Output {
    let m = seeded_model().display().to_string();
    let mut v = vec!["live"];
    v.extend_from_slice(args);
    v.extend(["--model", m.as_str(), "--manifold", "tests/fixtures/manifold"]);
    usq_command().args(&v).current_dir(repo()).output().expect("usq runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn plays_a_folder_as_plain_lines_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip");
    std::fs::create_dir(&clip).unwrap();
    for f in ["sim_linear_640x480.png", "sim_linear_640x480_noise.png"] {
        std::fs::copy(at(&format!("tests/fixtures/{f}")), clip.join(f)).unwrap();
    }
    let csv = dir.path().join("rec.csv");
    let args = ["--input", clip.to_str().unwrap(), "--frames", "4", "--fps", "50", "--budget-ms", "10000"];
    let mut with_csv = args.to_vec();
    with_csv.extend(["--record", csv.to_str().unwrap()]);
    let out = ok(&live(&with_csv));
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.starts_with("frame=") && l.contains(" nrq=")), "{out}");
    let rec = std::fs::read_to_string(&csv).unwrap();
    assert!(rec.starts_with("frame_id,timestamp_us,nrq,"), "{rec}");
    assert_eq!(rec.lines().count(), lines.len() + 1);

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let o = live(&json_args);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    for l in ok(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["nrq"].as_f64().unwrap().is_finite() && v["frame_id"].as_u64().is_some(), "{l}");
    }
    assert!(stderr.contains("4 frames pushed"), "the summary: {stderr}");
}

/// Frozen-image check: a repeated frame reads frozen, a changed one does not (the fixtures'
/// manifolds carry no clean statistics, so `frozen` is the only fault they can raise).
#[test]
fn a_repeated_frame_reads_frozen_and_a_changed_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip");
    std::fs::create_dir(&clip).unwrap();
    let files = [
        ("a.png", "sim_linear_640x480.png"),
        ("b.png", "sim_linear_640x480.png"),
        ("c.png", "sim_linear_640x480_noise.png"),
    ];
    for (name, f) in files {
        std::fs::copy(at(&format!("tests/fixtures/{f}")), clip.join(name)).unwrap();
    }
    // The folder loops: a b c a b c ..., frame ids from 1, so ids 2, 5, 8 repeat the frame before.
    let args = ["--input", clip.to_str().unwrap(), "--frames", "9", "--fps", "3", "--budget-ms", "200", "--json"];
    let out = ok(&live(&args));
    let results: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let scored = |id: u64| results.iter().any(|r| r["frame_id"] == id);
    let (mut repeats, mut changes) = (0, 0);
    for r in &results {
        let id = r["frame_id"].as_u64().unwrap();
        let change = r["checks"]["frame_change"].as_f64();
        if id == results[0]["frame_id"].as_u64().unwrap() {
            assert!(change.is_none() && r["faults"] == serde_json::json!([]), "the first result: {r}");
            continue;
        }
        // A frame is compared with the previous *scored* one; judge only consecutive pairs.
        if !scored(id - 1) {
            continue;
        }
        if id % 3 == 2 {
            assert_eq!((change, &r["faults"]), (Some(0.0), &serde_json::json!(["frozen"])), "{r}");
            repeats += 1;
        } else {
            assert!(change.unwrap() > usq::checks::FROZEN_CHANGE as f64 && r["faults"] == serde_json::json!([]), "{r}");
            changes += 1;
        }
    }
    assert!(repeats >= 1 && changes >= 1, "{repeats} repeats, {changes} changes judged: {out}");
}

/// Real consecutive frames of one lung video change with speckle: none reads frozen.
#[test]
fn real_clips_never_read_frozen() {
    let Some(lung) = resolve("../shared/data/pocus-lung") else {
        return skip("../shared/data/pocus-lung is absent");
    };
    let manifest = std::fs::read_to_string(lung.join("manifest.csv")).unwrap();
    let header: Vec<&str> = manifest.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let (file, source) = (col("file"), col("source_file"));
    let mut by_source: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in manifest.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        by_source.entry(cells[source].to_string()).or_default().push(cells[file].to_string());
    }
    // The three longest videos whose frames share one size, in frame order.
    let mut clips: Vec<Vec<String>> = by_source.into_values().filter(|f| f.len() >= 4).collect();
    clips.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut played = 0;
    for frames in clips.iter().take(3) {
        let dir = tempfile::tempdir().unwrap();
        let mut sorted = frames.clone();
        sorted.sort();
        for (i, f) in sorted.iter().take(12).enumerate() {
            let ext = std::path::Path::new(f).extension().unwrap().to_str().unwrap();
            std::fs::copy(lung.join(f), dir.path().join(format!("{i:03}.{ext}"))).unwrap();
        }
        let n = sorted.len().min(12).to_string();
        let args =
            ["--input", dir.path().to_str().unwrap(), "--frames", &n, "--fps", "4", "--budget-ms", "300", "--json"];
        let o = live(&args);
        if !o.status.success() {
            // Frames of one source of another size: the player refuses them; not this test's subject.
            continue;
        }
        for l in ok(&o).lines() {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(!r["faults"].as_array().unwrap().contains(&"frozen".into()), "{l}");
            played += 1;
        }
    }
    assert!(played >= 12, "{played} results");
}

#[test]
fn plays_y4m_and_raw_frames() {
    let f = usq::GrayFrame::open(at("tests/fixtures/sim_small_200x150.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A two-frame 4:2:0 y4m at 25 fps; its luma planes are the gray frame.
    let y4m = dir.path().join("clip.y4m");
    let mut bytes = format!("YUV4MPEG2 W{} H{} F25:1 Ip A1:1 C420jpeg\n", f.width, f.height).into_bytes();
    for _ in 0..2 {
        bytes.extend(b"FRAME\n");
        bytes.extend(&f.pixels);
        bytes.extend(vec![128u8; 2 * f.width.div_ceil(2) * f.height.div_ceil(2)]);
    }
    std::fs::write(&y4m, bytes).unwrap();
    let out = ok(&live(&["--input", y4m.to_str().unwrap(), "--frames", "3", "--budget-ms", "10000", "--json"]));
    assert!(out.lines().count() >= 1, "{out}");
    let raw = dir.path().join("clip.gray");
    std::fs::write(&raw, [f.pixels.clone(), f.pixels.clone()].concat()).unwrap();
    let size = format!("{}x{}", f.width, f.height);
    let out = ok(&live(&["--input", raw.to_str().unwrap(), "--size", &size, "--frames", "3", "--budget-ms", "10000"]));
    assert!(out.lines().count() >= 1, "{out}");
    // Two encoders (--threads 2) share the frame's 28 patches: the same first result.
    let big = usq::GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    let raw = dir.path().join("big.gray");
    std::fs::write(&raw, &big.pixels).unwrap();
    let size = format!("{}x{}", big.width, big.height);
    let first = |threads: &str| {
        let args = ["--input", raw.to_str().unwrap(), "--size", &size, "--frames", "1", "--budget-ms", "100000"];
        let out = ok(&live(&[&args[..], &["--json", "--threads", threads]].concat()));
        let v: serde_json::Value = serde_json::from_str(out.lines().next().expect("a result")).unwrap();
        (v["nrq"].as_f64().unwrap(), v["patches_scored"].as_u64().unwrap())
    };
    let (one, two) = (first("1"), first("2"));
    assert_eq!(one, two);
    assert_eq!(one.1, 28, "the budget affords the whole grid");
}

#[test]
fn bad_live_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("bad.y4m");
    std::fs::write(&corrupt, b"YUV4MPEG2 W10 H10 F25:1\nNOTAFRAME\n").unwrap();
    let raw = dir.path().join("x.gray");
    std::fs::write(&raw, [0u8; 10]).unwrap();
    // Headers built to hurt: a frame of 4e18 pixels (it aborted usq asking for that much memory),
    // and a header line that never ends.
    let huge = dir.path().join("huge.y4m");
    std::fs::write(&huge, b"YUV4MPEG2 W2000000000 H2000000000 F25:1 Cmono\nFRAME\n\0\0\0\0").unwrap();
    let endless = dir.path().join("endless.y4m");
    std::fs::write(&endless, [b"YUV4MPEG2 ".as_slice(), &[b'X'; 100_000]].concat()).unwrap();
    let not_dicom = dir.path().join("junk.dcm");
    std::fs::write(&not_dicom, [&[0u8; 128][..], b"DICM", &[0x55u8; 40]].concat()).unwrap();
    for (args, needle) in [
        (vec!["--frames", "1"], "--input"),
        (vec!["--input", "tests/fixtures", "--format", "YUYV"], "--device"),
        (vec!["--input", "tests/fixtures/manifold"], "no images"),
        (vec!["--input", raw.to_str().unwrap()], "--size"),
        (vec!["--input", raw.to_str().unwrap(), "--size", "4x4"], "no whole 4x4"),
        (vec!["--input", corrupt.to_str().unwrap()], "FRAME"),
        (vec!["--input", huge.to_str().unwrap()], "larger than usq reads"),
        (vec!["--input", endless.to_str().unwrap()], "has no size"),
        (vec!["--input", raw.to_str().unwrap(), "--size", "4294967296x4294967296"], "larger than usq reads"),
        (vec!["--input", not_dicom.to_str().unwrap()], "DICOM"),
        // Found by fuzzing: an 864-byte cine declaring a 2.4 GB value took 2.4 GB to open.
        (vec!["--input", "tests/fixtures/hostile_length.dcm"], "(9090,E790) declares 2431029392 bytes"),
        (vec!["--input", "tests/fixtures", "--roi", "0,0,5000,10"], "region of interest"),
    ]
    .into_iter()
    .chain(device_errors())
    {
        let o = live(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected '{needle}' in {err}");
    }
}

#[cfg(not(feature = "v4l2"))]
fn device_errors() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![(vec!["--device", "/dev/video0"], "built without V4L2 capture")]
}

#[cfg(feature = "v4l2")]
fn device_errors() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (vec!["--device", "/nonexistent/video9"], "no such device"),
        (vec!["--device", "/dev/null"], "not a V4L2 device"),
        (vec!["--device", "/dev/null", "--format", "H264"], "unknown capture format"),
    ]
}

/// A multi-frame 8-bit DICOM cine of the project's simulated frames.
#[cfg(feature = "dicom")]
fn write_cine(path: &std::path::Path, frames: &[&str], frame_time_ms: &str) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    let frames: Vec<usq::GrayFrame> = frames.iter().map(|f| usq::GrayFrame::open(at(f)).unwrap()).collect();
    let (w, h) = (frames[0].width as u16, frames[0].height as u16);
    let pixels: Vec<u8> = frames.iter().flat_map(|f| f.pixels.iter().copied()).collect();
    let instance = "2.25.302187411212335648510711190913425830745";
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, value));
    };
    put(tags::SOP_CLASS_UID, VR::UI, uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, instance.into());
    put(tags::MODALITY, VR::CS, "US".into());
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
    put(tags::NUMBER_OF_FRAMES, VR::IS, frames.len().to_string().into());
    put(tags::FRAME_TIME, VR::DS, frame_time_ms.into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(h));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(w));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
    put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
    put(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixels));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE)
        .media_storage_sop_instance_uid(instance);
    obj.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

#[cfg(feature = "dicom")]
#[test]
fn plays_a_dicom_cine_exactly_and_at_its_frame_rate() {
    let dir = tempfile::tempdir().unwrap();
    let cine = dir.path().join("cine.dcm");
    let frames = ["tests/fixtures/sim_linear_640x480_noise.png", "tests/fixtures/sim_linear_640x480.png"];
    write_cine(&cine, &frames, "200");
    let cine = cine.to_str().unwrap();

    // The first frame, scored whole, equals the offline score of the image it was made from
    // (both one patch per encoder run: batch slots round differently).
    let out = ok(&live(&["--input", cine, "--frames", "1", "--budget-ms", "100000", "--json"]));
    let live_nrq =
        serde_json::from_str::<serde_json::Value>(out.lines().last().unwrap()).unwrap()["nrq"].as_f64().unwrap();
    let m = seeded_model().display().to_string();
    let offline = usq_command()
        .args(["score", frames[0], "--json", "--batch", "1", "--model", &m, "--manifold", "tests/fixtures/manifold"])
        .current_dir(repo())
        .output()
        .unwrap();
    let offline = String::from_utf8(ok_output(offline)).unwrap();
    let offline_nrq = serde_json::from_str::<serde_json::Value>(offline.trim()).unwrap()["nrq"].as_f64().unwrap();
    assert!((live_nrq - offline_nrq).abs() < 1e-9, "live {live_nrq} vs offline {offline_nrq}");

    // Frame Time 200 ms: eight frames take at least 7 x 200 ms to play.
    let t = std::time::Instant::now();
    ok(&live(&["--input", cine, "--frames", "8", "--json"]));
    assert!(t.elapsed().as_secs_f64() >= 1.4, "played in {:?}: the cine's rate was not used", t.elapsed());
}

#[cfg(feature = "dicom")]
fn ok_output(o: Output) -> Vec<u8> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// A GET over a plain TCP connection: the status line, and the body (read to the end).
fn http_get(addr: &str, path: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    (head.lines().next().unwrap().to_string(), all[split + 4..].to_vec())
}

/// `--serve`: the page, the results as Server-Sent Events (the `--json` objects), the frame
/// with its heatmap as JPEG, the counters; loopback unless asked.
#[test]
fn serves_the_live_view_over_http() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    for f in ["sim_linear_640x480.png", "sim_linear_640x480_noise.png"] {
        std::fs::copy(at(&format!("tests/fixtures/{f}")), dir.path().join(f)).unwrap();
    }
    let m = seeded_model().display().to_string();
    let mut child = usq_command()
        .args([
            "live",
            "--input",
            dir.path().to_str().unwrap(),
            "--frames",
            "4000",
            "--fps",
            "4",
            "--budget-ms",
            "10000",
        ])
        .args(["--model", &m, "--manifold", "tests/fixtures/manifold", "--json", "--serve", "127.0.0.1:0"])
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "usq ended before serving");
        if let Some(rest) = line.trim().strip_prefix("usq live: serving the live view on http://") {
            break rest.trim_end_matches('/').to_string();
        }
    };
    // Events: read three `data:` lines off the stream.
    let mut events = std::net::TcpStream::connect(&addr).unwrap();
    write!(events, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut ev = BufReader::new(events);
    let mut head = String::new();
    ev.read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut got = Vec::new();
    while got.len() < 3 {
        let mut line = String::new();
        assert!(ev.read_line(&mut line).unwrap() > 0, "the event stream ended");
        if let Some(json) = line.strip_prefix("data: ") {
            got.push(serde_json::from_str::<serde_json::Value>(json).unwrap());
        }
    }
    let (status, jpeg) = http_get(&addr, "/frame.jpg");
    assert!(status.contains("200"), "{status}");
    let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (640, 480 + 14), "the frame and the heatmap's colour bar");
    let (status, page) = http_get(&addr, "/");
    assert!(status.contains("200") && String::from_utf8_lossy(&page).contains("EventSource(\"/events\")"));
    let (_, stats) = http_get(&addr, "/stats.json");
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert!(stats["frames_scored"].as_u64().unwrap() >= 3);
    assert!(http_get(&addr, "/nope").0.contains("404"));
    // Ctrl-C ends it as a user would; the page's clients do not hold it up.
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    // Each event is the very object `--json` printed for that frame.
    let printed: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for e in &got {
        assert!(printed.contains(e), "event {e} not among the --json lines");
    }
    // Another machine's address needs --serve-public.
    let o = live(&["--input", dir.path().to_str().unwrap(), "--frames", "1", "--serve", "0.0.0.0:0"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--serve-public"));
}
