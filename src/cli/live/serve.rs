//! `usq live --serve`: a small HTTP server beside the engine. The page (`/`), the results as
//! Server-Sent Events (`/events`, one `data:` line per result, the `--json` object), the
//! latest frame with its heatmap (`/frame.jpg`), the engine's counters with the frame
//! source's state (`/stats.json`) and what is playing (`/info.json`).
//!
//! It never slows the engine: results reach each client through a short queue that drops
//! for a client that does not keep up; the frame is drawn and encoded on the requesting
//! client's thread from the engine's patch view, which the worker only ever try-locks.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use usq::capture::status::SharedSource;
use usq::engine::Engine;

const PAGE: &str = include_str!("page.html");
/// Results queued per client before that client's older ones are dropped.
const CLIENT_QUEUE: usize = 8;
/// A comment line keeps idle connections (and proxies) open, and finds closed ones.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Default address: loopback only, since frames may show patient data.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8700";

pub struct Server {
    hub: Arc<Hub>,
    addr: std::net::SocketAddr,
}

struct Hub {
    engine: Arc<Engine>,
    source: SharedSource,
    clients: Mutex<Vec<Sender<Arc<str>>>>,
    info: String,
}

/// Whether the address may be served on without `--serve-public`.
fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}

impl Server {
    /// Binds `addr` and serves on its own threads. An address other than loopback needs
    /// `public` (and prints a warning): anyone who reaches it sees the frames.
    pub fn start(
        addr: &str,
        public: bool,
        engine: Arc<Engine>,
        info: serde_json::Value,
        source: SharedSource,
    ) -> usq::Result<Server> {
        use std::net::ToSocketAddrs;
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| usq::Error::from_source(usq::ErrorKind::InvalidArgument, &e))
            .map_err(|e| e.context(format!("--serve address {addr}")))?
            .next()
            .ok_or_else(|| usq::Error::new(usq::ErrorKind::InvalidArgument, format!("--serve address {addr}: none")))?;
        if !is_loopback(&sock) {
            if !public {
                usq::bail!(
                    InvalidArgument,
                    "--serve {addr} is not a loopback address: frames may show patient data; add --serve-public to serve \
                     them to other machines"
                );
            }
            eprintln!(
                "warning: serving live frames on {sock}, reachable from other machines; frames may show patient data"
            );
        }
        let server = tiny_http::Server::http(sock)
            .map_err(|e| usq::Error::new(usq::ErrorKind::Io, format!("serving on {sock}: {e}")))?;
        let bound = server.server_addr().to_ip().unwrap_or(sock);
        let hub = Arc::new(Hub { engine, source, clients: Mutex::new(Vec::new()), info: info.to_string() });
        let h = hub.clone();
        std::thread::Builder::new()
            .name("usq-serve".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let h = h.clone();
                    // One thread a request: an event stream holds its thread for as long as it is open.
                    let _ = std::thread::Builder::new().name("usq-serve-req".into()).spawn(move || h.handle(request));
                }
            })
            .map_err(|e| usq::Error::from_source(usq::ErrorKind::Io, &e))?;
        Ok(Server { hub, addr: bound })
    }

    /// The address served on (with the port the system chose for port 0).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Hands one result (its `--json` line) to every connected client; a client whose queue
    /// is full misses it, a closed one is forgotten.
    pub fn publish(&self, json: &str) {
        let line: Arc<str> = Arc::from(json);
        let mut clients = self.hub.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|c| !matches!(c.try_send(line.clone()), Err(TrySendError::Disconnected(_))));
    }
}

impl Hub {
    fn handle(&self, request: tiny_http::Request) {
        if *request.method() != tiny_http::Method::Get {
            let _ = request.respond(tiny_http::Response::from_string("GET only").with_status_code(405));
            return;
        }
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let header =
            |k: &str, v: &str| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("ASCII header");
        let no_store = header("Cache-Control", "no-store");
        let _ = match path.as_str() {
            "/" => request.respond(
                tiny_http::Response::from_string(PAGE).with_header(header("Content-Type", "text/html; charset=utf-8")),
            ),
            "/events" => {
                self.stream_events(request);
                Ok(())
            }
            "/frame.jpg" => match self.frame_jpeg() {
                Some((frame_id, jpeg)) => request.respond(
                    tiny_http::Response::from_data(jpeg)
                        // Content-Length, never chunks: simple clients (and curl -o) get plain bytes.
                        .with_chunked_threshold(usize::MAX)
                        .with_header(header("Content-Type", "image/jpeg"))
                        // Which result the picture belongs to (the page pairs its snapshot by it).
                        .with_header(header("X-Usq-Frame-Id", &frame_id.to_string()))
                        .with_header(no_store),
                ),
                None => request.respond(tiny_http::Response::from_string("no frame scored yet").with_status_code(503)),
            },
            "/stats.json" => request.respond(
                tiny_http::Response::from_string(self.stats_json())
                    .with_header(header("Content-Type", "application/json"))
                    .with_header(no_store),
            ),
            "/info.json" => request.respond(
                tiny_http::Response::from_string(self.info.clone())
                    .with_header(header("Content-Type", "application/json")),
            ),
            _ => request.respond(tiny_http::Response::from_string("not found").with_status_code(404)),
        };
    }

    /// The engine's counters, and the frame source's state under `source`.
    fn stats_json(&self) -> String {
        let mut v = serde_json::to_value(self.engine.stats()).expect("plain data");
        v["source"] = serde_json::to_value(self.source.get()).expect("plain data");
        v.to_string()
    }

    /// The latest scored frame with the window's heatmap, as JPEG, and its frame id (drawn
    /// here, off the engine).
    fn frame_jpeg(&self) -> Option<(u64, Vec<u8>)> {
        let view = self.engine.patch_view();
        let img = view.heatmap()?;
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img).ok()?;
        Some((view.frame_id, out))
    }

    /// Writes the response head, then each result as `data: JSON` until the client goes.
    fn stream_events(&self, request: tiny_http::Request) {
        let (tx, rx): (Sender<Arc<str>>, Receiver<Arc<str>>) = crossbeam_channel::bounded(CLIENT_QUEUE);
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        let mut w = request.into_writer();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
        if w.write_all(head.as_bytes()).and_then(|_| w.flush()).is_err() {
            return;
        }
        loop {
            let chunk = match rx.recv_timeout(KEEPALIVE) {
                Ok(line) => format!("data: {line}\n\n"),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => ": keepalive\n\n".to_string(),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            // A client that went away fails the write: its queue is dropped with this thread.
            if w.write_all(chunk.as_bytes()).and_then(|_| w.flush()).is_err() {
                return;
            }
        }
    }
}
