//! A headless Chromium driven through chromedriver's W3C WebDriver HTTP API (plain HTTP/1.1 on
//! the loopback), with the network disabled: no proxy, no name resolution, no background calls.
//! Debian's `chromium` and `chromium-driver` packages provide both; `.ci/run` installs them.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A browser session; the session and chromedriver end when it is dropped.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// `name` on `PATH`, or a failure that says how to install it.
fn executable(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()).unwrap_or_else(
        || {
            panic!(
                "`{name}` is not on PATH: the browser tests need Debian's `{package}` \
                 (`.ci/run` installs it: apt-get install chromium chromium-driver)"
            )
        },
    )
}

impl Browser {
    /// Starts chromedriver and a headless Chromium that saves downloads into `downloads`.
    pub(crate) fn start(downloads: &Path) -> Browser {
        let chromium = executable("chromium", "chromium");
        let chromedriver = executable("chromedriver", "chromium-driver");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser { driver, port, session: String::new(), _profile: profile };
        let started = Instant::now();
        while browser.try_request("GET", "/status", None).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            // The network is off: every proxy request fails and no host name resolves.
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let reply = browser.request("POST", "/session", Some(capabilities));
        browser.session = reply["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    fn try_request(&self, method: &str, path: &str, body: Option<Value>) -> std::io::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        // chromedriver may keep the connection open: read the head, then exactly the body.
        let mut reply = Vec::new();
        let mut buffer = [0u8; 64 * 1024];
        let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let payload = loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                return Err(invalid("connection closed before the reply ended"));
            }
            reply.extend_from_slice(&buffer[..n]);
            let Some(split) = reply.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
            let body = &reply[split + 4..];
            if head.contains("transfer-encoding: chunked") {
                if body.ends_with(b"0\r\n\r\n") {
                    break dechunk(body);
                }
                continue;
            }
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| invalid("no content-length"))?;
            if body.len() >= length {
                break body[..length].to_vec();
            }
        };
        serde_json::from_slice(&payload)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// One WebDriver command; fails the test on a WebDriver error.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self.try_request(method, path, body).expect("chromedriver answers");
        let value = reply["value"].clone();
        if let Some(error) = value.get("error") {
            panic!("WebDriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    fn command(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        self.request(method, &format!("/session/{}{what}", self.session), body)
    }

    /// Opens `url` and waits until the page's script has rendered (`body[data-ready]`).
    pub(crate) fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
        self.wait_for("return document.body.dataset.ready === '1'");
    }

    /// Sets the window size in CSS pixels.
    pub(crate) fn resize(&self, width: u32, height: u32) {
        self.command("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub(crate) fn run(&self, script: &str, args: Value) -> Value {
        self.command("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Polls `condition` (a function body returning a boolean) for up to 20 s.
    pub(crate) fn wait_for(&self, condition: &str) {
        let started = Instant::now();
        while self.run(condition, json!([])) != json!(true) {
            assert!(started.elapsed() < Duration::from_secs(20), "timed out: {condition}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the first element matching the CSS `selector`, as a user would.
    pub(crate) fn click(&self, selector: &str) {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": selector})),
        );
        let id = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        let id = id.unwrap_or_else(|| panic!("no element {selector}")).to_string();
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the first element matching the CSS `selector`, as a user would.
    pub(crate) fn type_into(&self, selector: &str, text: &str) {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": selector})),
        );
        let id = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        let id = id.unwrap_or_else(|| panic!("no element {selector}")).to_string();
        self.command("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    /// A PNG screenshot of the viewport.
    pub(crate) fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command("GET", "/screenshot", None);
        base64_decode(encoded.as_str().expect("base64 text"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_request("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The body of a chunked HTTP/1.1 reply.
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&bytes[..end]).unwrap().trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&bytes[end + 2..end + 2 + size]);
        bytes = &bytes[end + 2 + size + 2..];
    }
    out
}

/// Standard base64 (RFC 4648, padded) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(value(c)) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_padded_text() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
}
