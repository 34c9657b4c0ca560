//! `usq live --serve` in a real browser: headless Chromium driven over WebDriver
//! (chromedriver's W3C protocol, spoken here over plain HTTP with a Content-Length reader).
//!
//! Needs Debian's `chromium` and `chromium-driver` (tests/browser.sh installs them and sets
//! `USQ_BROWSER_REQUIRED=1`, so CI fails rather than skips). Every wait is bounded.

use crate::common::{at, repo, shared_data, skip, usq_command};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(60);

/// One HTTP/1.1 exchange: the status line and the body, read by its Content-Length, so a
/// server that keeps the connection open never makes the test wait on it.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(STEP)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse::<usize>().ok();
        }
    }
    let mut out = Vec::new();
    match length {
        Some(n) => {
            out.resize(n, 0);
            r.read_exact(&mut out).unwrap();
        }
        None => {
            r.read_to_end(&mut out).unwrap();
        }
    }
    (code, out)
}

/// A WebDriver session on a chromedriver this test started; both end on drop.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    fn start(downloads: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver().unwrap())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr = format!("127.0.0.1:{port}");
        let t = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(t.elapsed() < STEP, "chromedriver did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut b = Browser { driver, addr, session: String::new() };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium().unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,860", "--hide-scrollbars"],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "profile.default_content_setting_values.automatic_downloads": 1
                }
            }
        }}});
        let v = b.call("POST", "/session", Some(&caps));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        // Headless Chromium saves downloads only where told to, through the DevTools protocol.
        let cdp = json!({"cmd": "Browser.setDownloadBehavior",
                         "params": {"behavior": "allow", "downloadPath": downloads}});
        b.cmd("POST", "/goog/cdp/execute", Some(&cdp));
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (code, out) = http(&self.addr, method, path, body);
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(code, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(&json!({"script": script, "args": []})))
    }

    /// Clicks an element as a user would (WebDriver's element click, not a script).
    fn click(&self, css: &str) {
        let e = self.cmd("POST", "/element", Some(&json!({"using": "css selector", "value": css})));
        let id = e.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string();
        self.cmd("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ =
                std::panic::catch_unwind(|| http(&self.addr, "DELETE", &format!("/session/{}", self.session), None));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    p.is_file().then_some(p)
}

fn chromedriver() -> Option<PathBuf> {
    tool("USQ_CHROMEDRIVER", "/usr/bin/chromedriver")
}

fn chromium() -> Option<PathBuf> {
    tool("USQ_CHROMIUM", "/usr/bin/chromium")
}

/// Polls `f` until it returns Some, for at most [`STEP`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < STEP, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same JSON, numbers compared as the browser re-wrote them (58.0 as 58, and to within
/// the float parsers' last bit).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// `usq live --serve` on a clip, killed with SIGINT on drop.
struct Live(Child);

impl Drop for Live {
    fn drop(&mut self) {
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

/// The clip: `$USQ_BROWSER_CLIP` (a folder of frames) if set; else held-out HC18 frames
/// (subjects 600-629, never used for fitting) where ../shared/data is present; else the
/// project's simulated frames.
fn clip(dir: &Path) -> (PathBuf, &'static str) {
    if let Some(d) = std::env::var_os("USQ_BROWSER_CLIP") {
        return (PathBuf::from(d), "$USQ_BROWSER_CLIP");
    }
    let hc18 = shared_data().map(|d| d.join("hc18/images")).filter(|d| d.is_dir());
    if let Some(src) = hc18 {
        for i in 600..630 {
            let f = format!("{i}_HC.png");
            if std::fs::copy(src.join(&f), dir.join(&f)).is_err() {
                break;
            }
        }
        if std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0) >= 2 {
            return (dir.to_path_buf(), "held-out HC18 frames");
        }
    }
    for f in ["sim_linear_640x480.png", "sim_linear_640x480_noise.png", "sim_linear_640x480_blur.png"] {
        let _ = std::fs::copy(at(&format!("tests/fixtures/{f}")), dir.join(f));
    }
    (dir.to_path_buf(), "simulated frames")
}

/// The page in headless Chromium against `usq live --input` on the shipped defaults: the
/// gauge shows the NRQ of the event stream's result for the same frame, the frame image
/// follows the results, pause holds it, and the snapshot button downloads the frame with its
/// overlay (PNG) and the result (JSON). Saves a screenshot (`$USQ_BROWSER_SCREENSHOT`, or
/// target/browser/usq-live.png), `$USQ_BROWSER_WATCH_S` seconds later. `$USQ_BROWSER_CLIP`
/// and `$USQ_BROWSER_ORGAN` choose the clip and the organ (README's picture: a lung clip).
#[test]
fn the_live_page_in_headless_chromium() {
    if chromedriver().is_none() || chromium().is_none() {
        assert!(
            std::env::var_os("USQ_BROWSER_REQUIRED").is_none(),
            "USQ_BROWSER_REQUIRED is set but chromium/chromedriver are missing"
        );
        skip("browser test: chromium and chromium-driver are not installed (tests/browser.sh installs them)");
        return;
    }
    let frames = tempfile::tempdir().unwrap();
    let (input, what) = clip(frames.path());
    let organ = std::env::var("USQ_BROWSER_ORGAN").ok();
    let mut child = usq_command()
        .args(["live", "--input", input.to_str().unwrap(), "--frames", "100000", "--fps", "10"])
        .args(["--json", "--serve", "127.0.0.1:0"])
        .args(organ.iter().flat_map(|o| ["--organ", o.as_str()]))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let usq = Live(child);
    let addr = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "usq ended before serving");
        if let Some(rest) = line.trim().strip_prefix("usq live: serving the live view on http://") {
            break rest.trim_end_matches('/').to_string();
        }
    };
    // Keep draining usq's stderr so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));

    // The event stream, as another tool would subscribe to it: frame id -> result.
    let results = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u64, Value>::new()));
    {
        let results = results.clone();
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(s, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                if let Some(j) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(j).unwrap();
                    results.lock().unwrap_or_else(|e| e.into_inner()).insert(v["frame_id"].as_u64().unwrap(), v);
                }
            }
        });
    }

    let downloads = tempfile::tempdir().unwrap();
    let b = Browser::start(downloads.path());
    b.cmd("POST", "/url", Some(&json!({"url": format!("http://{addr}/")})));

    let gauge = || {
        let v = b.js("const e = (i) => document.getElementById(i);
             return [e('frame-id').textContent, e('nrq').textContent, e('nrq').dataset.value || '',
                     e('frame').dataset.frameId || '', e('frame').naturalWidth, e('scored').textContent];");
        let s = |i: usize| v[i].as_str().map(str::to_string).unwrap_or_else(|| v[i].to_string());
        (s(0), s(1), s(2), s(3), v[4].as_u64().unwrap_or(0), s(5))
    };

    // Results arrive, and the gauge's number is the stream's NRQ for the frame it names.
    let (id, shown, exact, _, _, _) = wait_for("a result on the page", || {
        let g = gauge();
        g.0.parse::<u64>().is_ok().then_some(g)
    });
    let id: u64 = id.parse().unwrap();
    let event = wait_for("the page's frame on the event stream", || results.lock().unwrap().get(&id).cloned());
    let nrq = event["nrq"].as_f64().unwrap();
    // Equal to the last bit or two: serde_json's default float parser may round the same
    // text one ulp away from the browser's (exact) one.
    let on_page = exact.parse::<f64>().unwrap();
    assert!((on_page - nrq).abs() <= 1e-12 * nrq.abs(), "frame {id}: the gauge holds {on_page}, the stream {nrq}");
    let organ_mismatch = event["faults"].as_array().unwrap().iter().any(|f| f == "organ_mismatch");
    assert_eq!(shown, if organ_mismatch { "--".to_string() } else { format!("{nrq:.2}") });

    // The frame image follows the results.
    let first = wait_for("the first frame image", || {
        let g = gauge();
        (g.4 > 0 && !g.3.is_empty()).then_some(g.3)
    });
    let next = wait_for("the frame image to update", || {
        let g = gauge();
        (g.3 != first).then_some(g.3)
    });
    assert!(next.parse::<u64>().unwrap() > first.parse::<u64>().unwrap());
    // Engine health is shown.
    wait_for("the scored counter", || gauge().5.parse::<u64>().ok().filter(|&n| n > 0));
    // So is the frame source's: playing, nothing lost or skipped (tests/v4l2/e2e.sh loses a
    // camera and reads the same /stats.json).
    let source = b.js("const e = (i) => document.getElementById(i);
         return [e('source-banner').hidden, e('source-banner').dataset.state || '', e('src-lost').textContent,
                 e('src-skipped').textContent];");
    assert_eq!(source, json!([true, "playing", "0 / 0", "0"]), "the source panel");

    // Pause holds the gauge while the engine goes on; resume follows it again.
    b.click("#pause");
    let held = gauge().0;
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(gauge().0, held, "paused, the gauge keeps its frame");
    b.click("#pause");
    wait_for("the gauge to move after resume", || (gauge().0 != held).then_some(()));

    // The snapshot, taken paused as a sonographer would: the frame on screen with its overlay
    // as PNG and that frame's result as JSON (kept by the page while paused).
    b.click("#pause");
    let (shown_id, shown_size) = wait_for("the shown frame's result on the page", || {
        let v = b.js("const i = document.getElementById('frame');
             return [i.dataset.frameId || '', i.naturalWidth, i.naturalHeight, !loading && recent.has(Number(i.dataset.frameId))];");
        let size = (v[1].as_u64()? as u32, v[2].as_u64()? as u32);
        (v[3].as_bool()?).then(|| (v[0].as_str().unwrap_or_default().to_string(), size))
    });
    b.click("#snapshot");
    let (png, result) = wait_for("the snapshot's two downloads", || {
        let names: Vec<String> =
            std::fs::read_dir(downloads.path()).ok()?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        let png = names.iter().find(|n| n.starts_with("usq-frame-") && n.ends_with(".png"))?;
        let json = names.iter().find(|n| n.starts_with("usq-result-") && n.ends_with(".json"))?;
        Some((downloads.path().join(png), downloads.path().join(json)))
    });
    assert!(png.to_string_lossy().ends_with(&format!("usq-frame-{shown_id}.png")), "{png:?} and frame {shown_id}");
    let img = wait_for("the PNG to be complete", || image::open(&png).ok());
    assert_eq!((img.width(), img.height()), shown_size, "the snapshot is the frame on screen");
    let r: Value = wait_for("the JSON to be complete", || serde_json::from_slice(&std::fs::read(&result).ok()?).ok());
    let snap_id = r["frame_id"].as_u64().expect("the snapshot's JSON is a result");
    assert_eq!(snap_id.to_string(), shown_id, "the snapshot's JSON is the shown frame's result");
    let streamed = results.lock().unwrap().get(&snap_id).cloned().expect("the snapshot's frame was streamed");
    assert!(same(&r, &streamed), "the snapshot's JSON {r} is not the stream's result {streamed}");

    // A screenshot of the page on the clip, after `$USQ_BROWSER_WATCH_S` seconds more of it
    // (for a trend with some history, as in README's picture).
    let watch = std::env::var("USQ_BROWSER_WATCH_S").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(watch));
    let shot = b.screenshot();
    let out = std::env::var_os("USQ_BROWSER_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| at("target/browser/usq-live.png"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &shot).unwrap();
    assert!(image::load_from_memory(&shot).unwrap().width() >= 1000);
    eprintln!("browser test: {what}, frame {id} nrq {nrq:.3}; screenshot {}", out.display());
    drop(b);
    drop(usq);
}
