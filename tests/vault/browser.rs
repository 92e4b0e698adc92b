//! A real headless Chromium driven through WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the console's end-to-end tests. One chromedriver serves the test
//! binary; each test opens its own browser session. The client is a few WebDriver calls over
//! HTTP/1.1, bounded in time, to 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's codes for the keys a keyboard user presses (W3C WebDriver §17.4.2).
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const SPACE: &str = " ";
    pub const DOWN: &str = "\u{E015}";
    pub const END: &str = "\u{E010}";
}

/// axe-core's script, from the test tools `scripts/test` installs (`npm ci` in `tests/node`).
fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/node/node_modules/axe-core/axe.min.js");
        if !path.exists() {
            crate::sign_in::install_test_tools();
        }
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// Runs a browser story: one large future whose poll frames, in a debug build, outgrow a test
/// thread's 2 MiB stack, so it runs on a thread with room, on its own runtime.
pub fn run_story<F: std::future::Future<Output = ()> + 'static>(
    story: impl FnOnce() -> F + Send + 'static,
) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(story())
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Where screenshots and saved pages go: `target/console/`.
pub fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Driver {
    addr: SocketAddr,
    _child: Child,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

/// The one chromedriver of this test binary, started on first use. Missing browser packages
/// fail the test, naming them: the test command installs them, so absence is a broken machine.
fn driver() -> SocketAddr {
    DRIVER
        .get_or_init(|| {
            for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
                assert!(
                    Path::new(path).exists(),
                    "{path} is missing: install Debian's {package} (scripts/test does)"
                );
            }
            let addr = crate::processes::free_port();
            // A static is never dropped, so chromedriver must not outlive the test binary by
            // itself: it is started from a thread that lives as long as the binary, with the
            // kernel asked to kill it when that thread (and so the binary) ends.
            let (started, child) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::os::unix::process::CommandExt;
                let mut command = std::process::Command::new(CHROMEDRIVER);
                command
                    .arg(format!("--port={}", addr.port()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                // SAFETY: only an async-signal-safe prctl between fork and exec.
                unsafe {
                    command.pre_exec(|| {
                        rustix::process::set_parent_process_death_signal(Some(
                            rustix::process::Signal::KILL,
                        ))
                        .map_err(std::io::Error::from)
                    });
                }
                started
                    .send(command.spawn().expect("start chromedriver"))
                    .unwrap();
                loop {
                    std::thread::park();
                }
            });
            Driver {
                addr,
                _child: child.recv().unwrap(),
            }
        })
        .addr
}

/// One request to chromedriver; its answer's `value`.
async fn wd(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    try_wd(addr, method, path, body)
        .await
        .expect("chromedriver connection")
}

async fn try_wd(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> std::io::Result<(u16, Value)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            addr.port(),
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        // chromedriver keeps the connection open whatever the request says: read the head,
        // then exactly Content-Length bytes.
        let mut reply = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if let Some(split) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if length.is_some_and(|len| reply.len() >= split + 4 + len) {
                    break;
                }
            }
        }
        std::io::Result::Ok(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("chromedriver answers within 60 s")?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&reply[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut payload = reply[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = crate::processes::dechunk(&payload);
    }
    let value: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    Ok((status, value["value"].clone()))
}

/// A browser session: one headless Chromium window, closed when dropped.
pub struct Browser {
    addr: SocketAddr,
    session: String,
    pub downloads: tempfile::TempDir,
}

impl Browser {
    pub async fn open() -> Self {
        let addr = driver();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(try_wd(addr, "GET", "/status", None).await, Ok((_, v)) if v["ready"] == true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let downloads = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-extensions", "--disable-sync",
                    "--disable-default-apps", "--disable-component-update", "--no-first-run",
                    "--no-default-browser-check", "--metrics-recording-only",
                    "--window-size=1280,800", "--lang=vi-VN",
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let (status, value) = wd(addr, "POST", "/session", Some(capabilities)).await;
        assert_eq!(status, 200, "chromedriver refused a session: {value}");
        let session = value["sessionId"].as_str().unwrap().to_owned();
        let browser = Self {
            addr,
            session,
            downloads,
        };
        browser
            .cdp(
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": browser.downloads.path()}),
            )
            .await;
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let (status, value) = wd(self.addr, method, &full, body).await;
        assert_eq!(status, 200, "WebDriver {method} {path}: {value}");
        value
    }

    /// A Chrome DevTools command, through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits (up to 15 s) for an element matching `css`, optionally one whose text contains
    /// `text`, and returns it.
    pub async fn wait(&self, css: &str, text: Option<&str>) -> Element<'_> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .js(
                    "const [css, text] = arguments; \
                     return [...document.querySelectorAll(css)].find(e => \
                       text === null || e.textContent.includes(text)) ?? null;",
                    json!([css, text]),
                )
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return Element {
                    browser: self,
                    id: id.to_owned(),
                };
            }
            if Instant::now() > deadline {
                let page = self.text("body").await;
                let shot = self.screenshot("timeout").await;
                panic!(
                    "no {css} {text:?} after 15 s (screenshot {}, last answer {found}); the page \
                     says:\n{page}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.wait(css, None).await.click().await;
    }

    /// Clears the field `css` and types `text` into it, as a person would.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait(css, None).await;
        e.clear().await;
        e.type_text(text).await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.js(
            "return document.querySelector(arguments[0])?.innerText ?? '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Saves a PNG of the viewport as `target/console/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let path = shots_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Prints the page as the browser would on paper (its print stylesheet), to PDF bytes.
    pub async fn print_pdf(&self) -> Vec<u8> {
        let b64 = self
            .call(
                "POST",
                "/print",
                Some(json!({"page": {"width": 14.8, "height": 21.0}, "background": true})),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// axe-core (pinned in `tests/node`) on the page as it is now, at desktop width and at a
    /// phone's 390 px: panics naming every WCAG 2.0, 2.1 and 2.2 A or AA violation it finds in
    /// the state `screen` names. Returns how many rules passed, so a check that ran nothing
    /// cannot pass unseen.
    pub async fn check_accessible(&self, screen: &str) -> u64 {
        let mut found = Vec::new();
        let mut passes = u64::MAX;
        for width in [1280, 390] {
            self.resize(width, 800).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            if self
                .js("return typeof window.axe === 'object';", json!([]))
                .await
                != json!(true)
            {
                self.js(&format!("{}\nreturn true;", axe_source()), json!([]))
                    .await;
            }
            let result = self
                .js(
                    "return axe.run(document, { runOnly: { type: 'tag', values: \
                       ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22a', 'wcag22aa'] } })\
                     .then(r => ({ passes: r.passes.length, violations: r.violations.map(v => \
                       `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 4).map(n => \
                       n.target.join(' ')).join(', ')}`) }));",
                    json!([]),
                )
                .await;
            passes = passes.min(result["passes"].as_u64().unwrap_or(0));
            for v in result["violations"].as_array().unwrap() {
                found.push(format!("{width}px {}", v.as_str().unwrap()));
            }
        }
        self.resize(1280, 800).await;
        if !found.is_empty() {
            let shot = self.screenshot(&format!("a11y-{screen}")).await;
            panic!(
                "accessibility violations on {screen} (screenshot {}):\n{}",
                shot.display(),
                found.join("\n")
            );
        }
        assert!(
            passes > 10,
            "axe checked almost nothing on {screen}: {passes} rules passed"
        );
        passes
    }

    /// Presses keys as a person would (WebDriver key actions), one after another: text, or
    /// the keys in [`keys`].
    pub async fn press(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Whether the focused element matches `css`.
    pub async fn focus_is(&self, css: &str) -> bool {
        self.js(
            "return document.activeElement?.matches(arguments[0]) ?? false;",
            json!([css]),
        )
        .await
            == json!(true)
    }

    /// Presses TAB until the focused element matches `css`, at most `most` times, as a
    /// keyboard user moves through a page; returns how many presses it took.
    pub async fn tab_to(&self, css: &str, most: usize) -> usize {
        for n in 0..=most {
            if self.focus_is(css).await {
                return n;
            }
            self.press(keys::TAB).await;
        }
        let at = self.focused().await;
        panic!("{css} not reached in {most} TABs (focus is on {at})");
    }

    /// Where focus is: `#id` if it has one, else its tag and text, for asserting where a
    /// keyboard user lands.
    pub async fn focused(&self) -> String {
        self.js(
            "const e = document.activeElement; if (!e) return ''; \
             return e.id ? `#${e.id}` : `${e.tagName.toLowerCase()}:${(e.textContent || '').trim().slice(0, 60)}`;",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The text of an open alert, if a script raised one.
    pub async fn alert(&self) -> Option<String> {
        let path = format!("/session/{}/alert/text", self.session);
        let (status, value) = wd(self.addr, "GET", &path, None).await;
        (status == 200).then(|| value.as_str().unwrap_or_default().to_owned())
    }

    /// Waits for a finished download named with `suffix` and returns its bytes.
    pub async fn downloaded(&self, suffix: &str) -> (String, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Chromium reserves the final name with an empty file while the bytes go to a
            // `.crdownload` beside it: the download is done once that one is gone.
            let names: Vec<std::path::PathBuf> = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            let writing = names
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "crdownload"));
            for path in names.iter().filter(|_| !writing) {
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if name.ends_with(suffix) {
                    return (name, std::fs::read(path).unwrap());
                }
            }
            assert!(Instant::now() < deadline, "no download ending {suffix}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closed on a thread of its own: Drop cannot await, and the session must not outlive
        // the test (a leaked Chromium holds memory for the rest of the run).
        let (addr, session) = (self.addr, self.session.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(wd(addr, "DELETE", &format!("/session/{session}"), None));
        })
        .join();
    }
}

pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl Element<'_> {
    async fn on(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        self.browser
            .call(method, &format!("/element/{}/{what}", self.id), body)
            .await
    }

    pub async fn click(&self) {
        self.on("POST", "click", Some(json!({}))).await;
    }

    pub async fn clear(&self) {
        self.on("POST", "clear", Some(json!({}))).await;
    }

    /// Types as keystrokes (for a file input: the path of the file to choose).
    pub async fn type_text(&self, text: &str) {
        self.on("POST", "value", Some(json!({ "text": text })))
            .await;
    }

    pub async fn text(&self) -> String {
        self.on("GET", "text", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn property(&self, name: &str) -> Value {
        self.on("GET", &format!("property/{name}"), None).await
    }
}
