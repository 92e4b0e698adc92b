//! The side-by-side benchmark: a real `hoso serve` (release build, SQLite + local files) and
//! nginx serving the same bytes, driven by the same `wrk` with the same concurrency, plus the
//! raw write + fsync reference for intake, in one run on one machine. Beside nginx stands the
//! **crypto floor**: the same sealed objects read, authenticated and decrypted by hoso's own
//! body code and sent, with no token, grant, audit entry or database ([`floor_main`]); each
//! copy row gives its ratio to both. The `pkcs11` phase runs the copies and intake again on a
//! vault whose keys are in a SoftHSM2 token. Prints one table: requests/s, p50/p99, errors (and
//! under a row with any, what they were: hoso's own count of 4xx/5xx it sent, and wrk's
//! socket errors by kind), the server's peak RSS and CPU time per answer during that row, and
//! each figure's ratio to its reference.
//!
//! `scripts/bench` installs nginx-light, wrk and softhsm2 when absent and runs this
//! (`cargo bench --bench compare`; HOSO_BENCH_SECONDS, default 8; HOSO_BENCH_ONLY picks
//! phases). It is a benchmark: it asserts nothing about time. Everything it starts is stopped
//! and its files removed when it ends or panics (an interrupt skips that), unless
//! HOSO_BENCH_KEEP=1: then the run keeps its work directory and says where, for whoever runs it
//! to delete (up to a few GiB: the fsync reference's and intake's files, a log of a million
//! entries). On ext4 without a journal, deleting tens of thousands of files slows every file
//! made in the minutes after (the header's probe says by how much), so runs back to back keep
//! theirs and their caller deletes them all at the end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Conn, rss_kib, scan};

const CITIZEN: &str = "001099012345";

/// Whether the run includes `phase` (`HOSO_BENCH_ONLY=small,intake` runs just those; unset runs
/// all): one phase alone is what a profiler attaches to.
fn runs(phase: &str) -> bool {
    std::env::var("HOSO_BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == phase))
}

fn seconds() -> u64 {
    std::env::var("HOSO_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// A child process killed when dropped, with its whole process group (nginx's workers too):
/// every child here is started as the leader of a group of its own.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command whose process leads its own group, for [`Running`].
fn grouped(mut command: Command) -> Command {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    command
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `hoso` command on the vault in `dir`. A vault whose keys are in a token (the `pkcs11`
/// phase) keeps the token's settings in `dir/pkcs11.env` (`NAME=value` lines), which every
/// command on it takes.
///
/// `HOSO_BENCH_HOSO` names another `hoso` binary to run instead of this build's: a before and
/// after of one change, alternated by the same bench binary.
fn hoso(dir: &Path) -> Command {
    let binary = std::env::var_os("HOSO_BENCH_HOSO").unwrap_or(env!("CARGO_BIN_EXE_hoso").into());
    let mut c = Command::new(binary);
    c.current_dir(dir).env("HOSO_LOG", "warn");
    if let Ok(text) = std::fs::read_to_string(dir.join("pkcs11.env")) {
        c.envs(text.lines().filter_map(|l| l.split_once('=')));
    }
    c
}

/// A fresh SoftHSM2 token under `root` and the settings that put a vault's keys in it.
fn softhsm_token(root: &Path) -> String {
    let tokens = root.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = root.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let pin = root.join("user.pin");
    std::fs::write(&pin, "246810\n").unwrap();
    let made = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "hoso-bench"])
        .args(["--pin", "246810", "--so-pin", "13579135"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (scripts/bench installs softhsm2)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    format!(
        "SOFTHSM2_CONF={}\nHOSO_KEY_STORE=pkcs11\nHOSO_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so\n\
         HOSO_PKCS11_TOKEN_LABEL=hoso-bench\nHOSO_PKCS11_PIN_FILE={}\n",
        conf.display(),
        pin.display()
    )
}

/// `hoso init` then `hoso serve` on the vault in `dir` (its `/metrics` public, for the errors
/// by kind), ready.
fn serve(dir: &Path) -> (Running, SocketAddr) {
    let out = hoso(dir).arg("init").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = free_port();
    let server = Running(
        grouped(hoso(dir))
            .arg("serve")
            .env("HOSO_LISTEN", addr.to_string())
            .env("HOSO_METRICS_PUBLIC", "true")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(addr);
    (server, addr)
}

fn token(dir: &Path, role: &str) -> String {
    let out = hoso(dir)
        .args([
            "token", "issue", "--role", role, "--sub", "bench", "--office", "BENCH",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One wrk run's figures.
#[derive(Default, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// What the errors were, as wrk saw them: non-2xx/3xx answers, and socket errors by kind
    /// (connect, read, write, timeout).
    non_2xx: u64,
    socket: [u64; 4],
    /// hoso's own count of the answers it sent in the run, 4xx and 5xx (its `/metrics`).
    server: Option<[u64; 2]>,
    /// The server's peak RSS during the run, KiB (servers in their own processes only).
    peak_kib: Option<u64>,
    /// The server's CPU time (user and system, its children's too) per answer during the run,
    /// µs: on this machine client and servers share two cores, so a row's rate is mostly this.
    cpu_us: Option<f64>,
}

impl Figures {
    /// The errors by kind, or nothing when there were none: a row with errors cannot pass
    /// for a fast one.
    fn errors_by_kind(&self) -> Option<String> {
        let mut kinds = Vec::new();
        if let Some([c4, c5]) = self.server {
            kinds.extend([("4xx sent", c4), ("5xx sent", c5)]);
        }
        kinds.push(("non-2xx received", self.non_2xx));
        for (kind, n) in ["connect", "read", "write", "timeout"]
            .iter()
            .zip(self.socket)
        {
            kinds.push((kind, n));
        }
        // A client's own failed operations (the PostgreSQL and S3 references).
        let known = self.non_2xx + self.socket.iter().sum::<u64>();
        kinds.push(("failed operations", self.errors.saturating_sub(known)));
        let said: Vec<String> = kinds
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        (!said.is_empty()).then(|| said.join(", "))
    }
}

/// hoso's counts of the answers it sent so far, by class: 4xx and 5xx (`/metrics`, public in
/// the bench's vaults).
fn answers_sent(addr: SocketAddr) -> [u64; 2] {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let count = |class: &str| {
        let prefix = format!("hoso_http_responses_total{{class=\"{class}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    [count("4xx"), count("5xx")]
}

/// A load on hoso serve at `addr` (pid `pid`): its peak RSS, and the errors it says it sent.
fn on_hoso(addr: SocketAddr, pid: u32, load: impl FnOnce() -> Figures) -> Figures {
    let before = answers_sent(addr);
    let mut figures = with_server_figures(pid, load);
    let after = answers_sent(addr);
    figures.server = Some([after[0] - before[0], after[1] - before[1]]);
    figures
}

/// A server process and its children (nginx's workers).
fn family(pid: u32) -> Vec<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    std::iter::once(pid)
        .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
        .collect()
}

/// Runs `load` and adds the peak RSS of `pid` and its children during it, and the CPU time
/// they used per answer. Linux's peak (VmHWM) is reset first (clear_refs "5"), so the figure is
/// this run's alone.
fn with_server_figures(pid: u32, load: impl FnOnce() -> Figures) -> Figures {
    let pids = family(pid);
    for p in &pids {
        let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
    }
    let (ticks, started) = (cpu_ticks(&pids), Instant::now());
    let mut figures = load();
    // A child that ended during the run (an nginx worker replaced) takes its ticks with it.
    let seconds = (cpu_ticks(&pids) - ticks).max(0.0) / clock_ticks_per_second();
    let answers = figures.rps * started.elapsed().as_secs_f64();
    figures.cpu_us = (answers > 0.0).then(|| seconds * 1e6 / answers);
    figures.peak_kib = Some(pids.iter().map(|p| rss_kib(*p, "VmHWM")).sum());
    figures
}

/// The CPU time `pids` have used so far, user and system, in clock ticks: fields 14 and 15 of
/// `/proc/PID/stat`, counted after the command's name (which may hold spaces). A process's
/// figure includes its threads that have ended.
fn cpu_ticks(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let (user, system) = (fields.get(11)?, fields.get(12)?);
            Some(user.parse::<f64>().ok()? + system.parse::<f64>().ok()?)
        })
        .sum()
}

/// The unit of `/proc`'s CPU times (`getconf CLK_TCK`; 100 wherever it cannot be asked).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn ms(text: &str) -> f64 {
    let t = text.trim();
    if let Some(v) = t.strip_suffix("us") {
        v.parse::<f64>().unwrap_or(0.0) / 1000.0
    } else if let Some(v) = t.strip_suffix("ms") {
        v.parse().unwrap_or(0.0)
    } else if let Some(v) = t.strip_suffix('s') {
        v.parse::<f64>().unwrap_or(0.0) * 1000.0
    } else {
        0.0
    }
}

fn wrk(url: &str, connections: u32, script: Option<&Path>) -> Figures {
    let mut c = Command::new("wrk");
    c.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{}s", seconds()),
        "--latency",
        "--timeout",
        "10s",
    ]);
    if let Some(s) = script {
        c.arg("-s").arg(s);
    }
    let out = c
        .arg(url)
        .output()
        .expect("wrk (scripts/bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = Figures::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            f.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            f.p50_ms = ms(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            f.p99_ms = ms(v);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            f.non_2xx = v.trim().parse::<u64>().unwrap_or(0);
            f.errors += f.non_2xx;
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for (i, n) in v
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .take(4)
                .enumerate()
            {
                f.socket[i] = n;
                f.errors += n;
            }
        }
    }
    f
}

/// Write + fsync of `size`-byte files from `threads` threads for the bench's duration, in `dir`.
fn fsync_reference(dir: &Path, size: usize, threads: usize) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds());
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let dir = dir.to_path_buf();
            std::thread::spawn(move || {
                use std::io::Write;
                let data = scan(t as u64 + 7, size);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let path = dir.join(format!("{t}-{n}"));
                    let mut f = std::fs::File::create(&path).unwrap();
                    f.write_all(&data).unwrap();
                    f.sync_all().unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn lua_tokens(tokens: &[String], path: &str) -> String {
    let list: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "local tokens = {{ {} }}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  \
         return wrk.format(\"GET\", \"{path}\", {{ [\"Authorization\"] = \"Bearer \" .. tokens[(i % #tokens) + 1] }})\nend\n",
        list.join(", ")
    )
}

fn lua_intake(clerk: &str, size: usize) -> String {
    format!(
        r#"local counter = 0
local prefix = ""
local filler = string.rep("x", {filler})
init = function(args) prefix = tostring({{}}) .. tostring(math.random(1, 1000000000)) end
request = function()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local meta = '{{"doc_type":"other","doc_number":"B","holder_name":"Bench","issued_on":"2020-01-01","issued_by":"Bench"}}'
  local file = "%PDF-1.7\n%" .. id .. "\n" .. filler
  local body = "--B0UNDARY\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n" .. meta ..
    "\r\n--B0UNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.pdf\"\r\n\r\n" ..
    file .. "\r\n--B0UNDARY--\r\n"
  return wrk.format("POST", "/v1/citizens/{CITIZEN}/documents",
    {{ ["Authorization"] = "Bearer {clerk}", ["Content-Type"] = "multipart/form-data; boundary=B0UNDARY" }}, body)
end
"#,
        filler = size - 64
    )
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
    content_type: &str,
) -> (u16, Vec<u8>) {
    let mut conn = Conn::open(addr).await;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.call(&head, body).await
}

/// Takes in and verifies one document of `size` bytes; returns its id.
async fn document(addr: SocketAddr, clerk: &str, seed: u64, size: usize, doc_type: &str) -> String {
    let file = scan(seed, size);
    let boundary = "b0undary";
    let meta = format!(
        r#"{{"doc_type":"{doc_type}","doc_number":"B{seed}","holder_name":"Bench","issued_on":"2020-01-01","issued_by":"Bench"}}"#
    );
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.pdf\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, reply) = http(
        addr,
        "POST",
        &format!("/v1/citizens/{CITIZEN}/documents"),
        clerk,
        &body,
        &format!("multipart/form-data; boundary={boundary}"),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let (status, _) = http(
        addr,
        "POST",
        &format!("/v1/documents/{id}/verify"),
        clerk,
        b"",
        "application/json",
    )
    .await;
    assert_eq!(status, 200);
    id
}

/// `n` grants of 1000 reads of `doc_type` to one officer; their tokens.
async fn grants(addr: SocketAddr, clerk: &str, doc_type: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let body = serde_json::json!({
            "national_id": CITIZEN, "doc_types": [doc_type], "case_ref": "000.00.31.H40-261124-0001",
            "purpose": "bench", "grantee": "officer", "grantee_office": "BENCH",
            "ttl_seconds": 3600, "max_uses": 1000,
        });
        let (status, reply) = http(
            addr,
            "POST",
            "/v1/grants",
            clerk,
            body.to_string().as_bytes(),
            "application/json",
        )
        .await;
        assert_eq!(status, 201);
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        out.push(v["token"].as_str().unwrap().to_owned());
    }
    out
}

fn nginx(root: &Path, addr: SocketAddr) -> Running {
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2;\npid {0}/nginx.pid;\nerror_log {0}/error.log;\ndaemon off;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {0}/tmp; \
             proxy_temp_path {0}/tmp; fastcgi_temp_path {0}/tmp; uwsgi_temp_path {0}/tmp; scgi_temp_path {0}/tmp;\n\
             server {{ listen {1}; root {0}/www; }} }}\n",
            root.display(),
            addr
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let child = grouped(Command::new("/usr/sbin/nginx"))
        .args(["-c"])
        .arg(&conf)
        .args(["-p"])
        .arg(root)
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/bench installs nginx-light)");
    wait_for(addr);
    Running(child)
}

fn row(what: &str, f: Figures, references: &[(&str, f64)]) {
    let ratio = references
        .iter()
        .map(|(name, r)| format!("{:.2} of {name}", f.rps / r))
        .collect::<Vec<_>>()
        .join("; ");
    let peak = f
        .peak_kib
        .map(|k| (k / 1024).to_string())
        .unwrap_or_default();
    let cpu = f.cpu_us.map(|us| format!("{us:.0}")).unwrap_or_default();
    println!(
        "| {what:<44} | {:>9.0} | {:>7.1} | {:>7.1} | {:>6} | {peak:>8} | {cpu:>8} | {ratio} |",
        f.rps, f.p50_ms, f.p99_ms, f.errors
    );
    if let Some(kinds) = f.errors_by_kind() {
        println!("|   errors in the row above: {kinds} | | | | | | | |");
    }
}

/// Both AES-256-GCM implementations hoso may use, opening 64 KiB segments of a 1 MiB body in
/// memory: MB/s of each (one core).
fn cipher_figures() -> (f64, f64) {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    let key = [7u8; 32];
    let nonce = [1u8; 12];
    let aad = b"bench";
    let segment = scan(3, 64 * 1024);
    let rounds = 16 * 64; // 64 MiB
    // aes-gcm
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    let mut sealed = segment.clone();
    let n = aes_gcm::Nonce::from(nonce);
    let tag = cipher
        .encrypt_inout_detached(&n, aad, sealed.as_mut_slice().into())
        .unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        let mut buf = sealed.clone();
        cipher
            .decrypt_inout_detached(&n, aad, buf.as_mut_slice().into(), &tag)
            .unwrap();
    }
    let rust_crypto = (rounds * 64 * 1024) as f64 / start.elapsed().as_secs_f64() / 1e6;
    // ring
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap(),
    );
    let mut sealed = segment.clone();
    let tag = key
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(aad),
            &mut sealed,
        )
        .unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        let mut buf = sealed.clone();
        key.open_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(aad),
            tag,
            &mut buf,
            0..,
        )
        .unwrap();
    }
    let ring = (rounds * 64 * 1024) as f64 / start.elapsed().as_secs_f64() / 1e6;
    (rust_crypto, ring)
}

/// One copy phase: nginx serving the file, S3 serving the object (on S3), then hoso's officer
/// copies of the same bytes, each with the same 32 connections.
struct Copies<'a> {
    size: usize,
    label: &'a str,
    nginx_url: String,
    floor_url: String,
    lua: &'a Path,
    /// The servers' pids, for their peak RSS.
    pids: Servers,
}

#[derive(Clone, Copy)]
struct Servers {
    hoso: u32,
    nginx: u32,
    floor: u32,
}

impl Copies<'_> {
    /// Prints the phase's rows; returns nginx's figures (the memory row's reference) and
    /// hoso's (the token rows' reference).
    async fn run(&self, hoso: SocketAddr, remote: Option<&Remote>) -> (Figures, Figures) {
        let label = self.label;
        let nginx = with_server_figures(self.pids.nginx, || wrk(&self.nginx_url, 32, None));
        row(&format!("nginx, {label} file, 32 connections"), nginx, &[]);
        let floor = with_server_figures(self.pids.floor, || wrk(&self.floor_url, 32, None));
        row(
            &format!("crypto floor, {label} sealed object, 32 conn."),
            floor,
            &[("nginx", nginx.rps)],
        );
        let mut refs = vec![("floor", floor.rps), ("nginx", nginx.rps)];
        if let Some(r) = remote {
            let get = r.get_rate(self.size, 32).await;
            row(&format!("S3 GET of a {label} object, 32 clients"), get, &[]);
            refs.push(("S3 GET", get.rps));
        }
        let copies = on_hoso(hoso, self.pids.hoso, || {
            wrk(&format!("http://{hoso}/"), 32, Some(self.lua))
        });
        row(
            &format!("hoso officer copy, {label}, 32 connections"),
            copies,
            &refs,
        );
        (nginx, copies)
    }
}

fn remote_backends() -> bool {
    std::env::var("HOSO_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"))
}

fn rate(rps: f64) -> Figures {
    Figures {
        rps,
        ..Figures::default()
    }
}

/// PostgreSQL and S3, when `hoso serve` runs on them (the same `HOSO_DATABASE_URL` and
/// `HOSO_STORAGE_URL` it reads): their own rates, through the clients hoso uses.
struct Remote {
    database_url: String,
    store: hoso::blob::BlobStore,
}

impl Remote {
    async fn from_env() -> Option<Self> {
        let database_url = std::env::var("HOSO_DATABASE_URL").ok()?;
        let storage_url = std::env::var("HOSO_STORAGE_URL").ok()?;
        if !database_url.starts_with("postgres") || !storage_url.starts_with("s3://") {
            return None;
        }
        let limits = hoso::blob::S3Limits {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retries: 3,
            retry_timeout: Duration::from_secs(10),
        };
        let storage_url = storage_url.parse().expect("HOSO_STORAGE_URL");
        let store = hoso::blob::BlobStore::from_url(&storage_url, &limits).expect("S3 store");
        Some(Self {
            database_url,
            store,
        })
    }

    /// `clients` tasks each reading one `size`-byte object again and again.
    async fn get_rate(&self, size: usize, clients: usize) -> Figures {
        let key = format!("bench-reference/get-{size}");
        self.store
            .put_all(&key, scan(9, size).into())
            .await
            .expect("S3 PUT");
        let store = self.store.clone();
        let figures = for_a_while(clients, move |_, _| {
            let (store, key) = (store.clone(), key.clone());
            async move { store.get_all(&key).await.is_ok() }
        })
        .await;
        let _ = self
            .store
            .delete(&format!("bench-reference/get-{size}"))
            .await;
        figures
    }

    /// `clients` tasks each storing new `size`-byte objects; all removed afterwards.
    async fn put_rate(&self, size: usize, clients: usize) -> Figures {
        let body = bytes::Bytes::from(scan(10, size));
        let store = self.store.clone();
        let figures = for_a_while(clients, move |client, n| {
            let (store, body) = (store.clone(), body.clone());
            async move {
                let key = format!("bench-reference/put-{client}-{n}");
                store.put_all(&key, body).await.is_ok()
            }
        })
        .await;
        for key in self
            .store
            .list_under("bench-reference/")
            .await
            .unwrap_or_default()
        {
            let _ = self.store.delete(&key).await;
        }
        figures
    }

    /// `clients` connections each committing one small row per transaction (an audit entry's
    /// size), in a scratch table dropped afterwards.
    async fn commit_rate(&self, clients: usize) -> Figures {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(clients as u32)
            .connect(&self.database_url)
            .await
            .expect("PostgreSQL");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_commit_reference \
             (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, payload TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .expect("scratch table");
        let p = pool.clone();
        let figures = for_a_while(clients, move |_, n| {
            let pool = p.clone();
            async move {
                let Ok(mut tx) = pool.begin().await else {
                    return false;
                };
                let inserted =
                    sqlx::query("INSERT INTO bench_commit_reference (at, payload) VALUES ($1, $2)")
                        .bind(n as i64)
                        .bind("x".repeat(300))
                        .execute(&mut *tx)
                        .await
                        .is_ok();
                inserted && tx.commit().await.is_ok()
            }
        })
        .await;
        let _ = sqlx::query("DROP TABLE bench_commit_reference")
            .execute(&pool)
            .await;
        pool.close().await;
        figures
    }
}

/// Runs `clients` loops of `op` for the bench's duration: requests/s, p50/p99 and failures.
async fn for_a_while<F, Fut>(clients: usize, op: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds());
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let op = op.clone();
            tokio::spawn(async move {
                let (mut took, mut failed) = (Vec::new(), 0u64);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if op(client, n).await {
                        took.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failed += 1;
                    }
                    n += 1;
                }
                (took, failed)
            })
        })
        .collect();
    let (mut took, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (mut t, f) = t.await.unwrap();
        took.append(&mut t);
        errors += f;
    }
    took.sort_by(f64::total_cmp);
    let at =
        |q: f64| took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)));
    Figures {
        rps: took.len() as f64 / started.elapsed().as_secs_f64(),
        p50_ms: at(0.50).copied().unwrap_or(0.0),
        p99_ms: at(0.99).copied().unwrap_or(0.0),
        errors,
        ..Figures::default()
    }
}

/// The least of a log writer's batch on SQLite, without the rest of hoso: lock the head, insert
/// `rows` entries in one statement, move the head, commit (WAL, `synchronous=FULL`), repeated
/// for the bench's duration on a fresh database with hoso's schema. (The real batch also reads
/// the head and the tree's edge, spends grant uses and stores tree nodes.) Either through sqlx's
/// `Any` driver, as `hoso serve` does (each statement a round trip to the thread sqlx keeps for
/// the connection), or in process (rusqlite, the same SQLite library). Entries/s, alone on the
/// machine: the two differ only in how the statements reach SQLite.
struct AuditBatches {
    rows: usize,
    deadline: Instant,
}

impl AuditBatches {
    const SCHEMA: &'static str = include_str!("../migrations/sqlite/0001_initial.sql");
    const PRAGMAS: [&'static str; 2] = ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL"];

    fn new(rows: usize) -> Self {
        Self {
            rows,
            deadline: Instant::now() + Duration::from_secs(seconds()),
        }
    }

    fn insert_sql(&self) -> String {
        let row = |r: usize| {
            let cells: Vec<String> = (1..=14).map(|c| format!("${}", r * 14 + c)).collect();
            format!("({})", cells.join(", "))
        };
        let rows: Vec<String> = (0..self.rows).map(row).collect();
        format!(
            "INSERT INTO audit_entries (seq, at, actor, role, office, action, outcome, \
             document_id, citizen_idx, grant_id, case_ref, reason, prev_hash, hash) VALUES {}",
            rows.join(", ")
        )
    }

    /// The text cells of entry `seq`, the same shape as a content read's.
    fn texts(seq: i64) -> [Option<String>; 12] {
        let hex = |b: u8| Some(format!("{b:02x}").repeat(32));
        [
            Some("officer-1".into()),
            Some("officer".into()),
            Some("PHUONG-1".into()),
            Some("document.content".into()),
            Some("allowed".into()),
            Some(uuid::Uuid::now_v7().to_string()),
            hex(0xab),
            Some(uuid::Uuid::now_v7().to_string()),
            Some(format!("HS-{seq}")),
            None,
            hex(0xcd),
            hex(0xef),
        ]
    }

    async fn through_sqlx(&self, file: &Path) -> f64 {
        use sqlx::{Connection, Executor};
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        for pragma in Self::PRAGMAS {
            conn.execute(pragma).await.unwrap();
        }
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal", "the database through sqlx is not in WAL mode");
        conn.execute(Self::SCHEMA).await.unwrap();
        let insert = self.insert_sql();
        let (start, mut seq) = (Instant::now(), 0i64);
        while Instant::now() < self.deadline {
            conn.execute("BEGIN IMMEDIATE").await.unwrap();
            conn.execute("UPDATE audit_head SET seq = seq WHERE id = 1")
                .await
                .unwrap();
            let mut q = sqlx::query(&insert);
            for _ in 0..self.rows {
                seq += 1;
                q = q.bind(seq).bind(seq);
                for text in Self::texts(seq) {
                    q = q.bind(text);
                }
            }
            q.execute(&mut conn).await.unwrap();
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, signature = $3 WHERE id = 1")
                .bind(seq)
                .bind("ab".repeat(32))
                .bind("cd".repeat(43))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.execute("COMMIT").await.unwrap();
        }
        seq as f64 / start.elapsed().as_secs_f64()
    }

    fn in_process(&self, file: &Path) -> f64 {
        let conn = rusqlite::Connection::open(file).unwrap();
        for pragma in Self::PRAGMAS {
            conn.execute_batch(pragma).unwrap();
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal", "the in-process database is not in WAL mode");
        conn.execute_batch(Self::SCHEMA).unwrap();
        let insert = self.insert_sql();
        let (start, mut seq) = (Instant::now(), 0i64);
        while Instant::now() < self.deadline {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            conn.prepare_cached("UPDATE audit_head SET seq = seq WHERE id = 1")
                .unwrap()
                .execute([])
                .unwrap();
            let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(self.rows * 14);
            for _ in 0..self.rows {
                seq += 1;
                values.extend([seq.into(), seq.into()]);
                values.extend(Self::texts(seq).map(rusqlite::types::Value::from));
            }
            conn.prepare_cached(&insert)
                .unwrap()
                .execute(rusqlite::params_from_iter(values))
                .unwrap();
            conn.prepare_cached(
                "UPDATE audit_head SET seq = ?1, hash = ?2, signature = ?3 WHERE id = 1",
            )
            .unwrap()
            .execute(rusqlite::params![seq, "ab".repeat(32), "cd".repeat(43)])
            .unwrap();
            conn.execute_batch("COMMIT").unwrap();
        }
        seq as f64 / start.elapsed().as_secs_f64()
    }
}

/// What creating one empty file costs here now, µs (the mean of 200, kept until the run's end:
/// deleting them would slow the rows that follow, as a deletion does on ext4 without a
/// journal).
fn file_create_us(dir: &Path) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let started = Instant::now();
    for n in 0..200 {
        std::fs::File::create_new(dir.join(n.to_string())).unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / 200.0
}

fn main() {
    if let Ok(spec) = std::env::var("HOSO_BENCH_FLOOR") {
        floor_main(&spec);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(compare());
}

async fn compare() {
    let mut work = tempfile::tempdir().unwrap();
    if std::env::var("HOSO_BENCH_KEEP").is_ok_and(|v| v == "1") {
        // Runs back to back: this run's cleanup would slow the next one's file-making rows.
        work.disable_cleanup(true);
        eprintln!("the work directory is kept: {}", work.path().display());
    }
    let create_us = file_create_us(&work.path().join("probe"));
    let dir = work.path().join("vault");
    std::fs::create_dir_all(&dir).unwrap();
    let (server, addr) = serve(&dir);
    let pid = server.0.id();
    let clerk = token(&dir, "clerk");

    let big = document(addr, &clerk, 1, 1024 * 1024, "cccd").await;
    let small = document(addr, &clerk, 2, 200 * 1024, "passport").await;
    let reads = (seconds() as usize * 4).max(8);
    let big_tokens = grants(addr, &clerk, "cccd", reads).await;
    let small_tokens = grants(addr, &clerk, "passport", reads * 2).await;

    let www = work.path().join("nginx/www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("big"), scan(1, 1024 * 1024)).unwrap();
    std::fs::write(www.join("small"), scan(2, 200 * 1024)).unwrap();
    let nginx_addr = free_port();
    let nginx_server = nginx(&work.path().join("nginx"), nginx_addr);
    let floor_addr = free_port();
    let floor_server = Running(
        grouped(Command::new(std::env::current_exe().unwrap()))
            .env(
                "HOSO_BENCH_FLOOR",
                format!("{floor_addr}|{}|{big},{small}", dir.display()),
            )
            .env("HOSO_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(floor_addr);

    let scripts = work.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let write = |name: &str, text: String| -> PathBuf {
        let p = scripts.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let big_lua = write(
        "big.lua",
        lua_tokens(&big_tokens, &format!("/v1/documents/{big}/content")),
    );
    let small_lua = write(
        "small.lua",
        lua_tokens(&small_tokens, &format!("/v1/documents/{small}/content")),
    );
    let intake_lua = write("intake.lua", lua_intake(&clerk, 200 * 1024));

    let idle = rss_kib(pid, "VmRSS");
    eprintln!("hoso serve is pid {pid}");
    println!(
        "hoso compare: {} s per run, wrk -t2, loopback, {} cores; hoso release build, {}",
        seconds(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if remote_backends() {
            "PostgreSQL + S3"
        } else {
            "SQLite + local files"
        }
    );
    println!(
        "creating an empty file in the work directory: {create_us:.0} µs (ext4 without a journal \
         passes over inodes freed in the last minutes: after many deletions, such as another \
         run's cleanup, every new file costs far more, and so does each row that makes files)"
    );
    println!();
    println!(
        "| {:<44} | {:>9} | {:>7} | {:>7} | {:>6} | {:>8} | {:>8} | ratio |",
        "what", "req/s", "p50 ms", "p99 ms", "errors", "peak MiB", "CPU µs"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|{}|---|",
        "-".repeat(46),
        "-".repeat(11),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(8),
        "-".repeat(10),
        "-".repeat(10)
    );

    let pids = Servers {
        hoso: pid,
        nginx: nginx_server.0.id(),
        floor: floor_server.0.id(),
    };
    // On PostgreSQL + S3 each figure also stands beside what those backends do alone, measured
    // here with the same clients hoso uses (sqlx, object_store).
    let remote = Remote::from_env().await;

    let (mut nginx_big, mut files) = (None, Vec::new());
    if runs("big") {
        let big = Copies {
            size: 1024 * 1024,
            label: "1 MiB",
            nginx_url: format!("http://{nginx_addr}/big"),
            floor_url: format!("http://{floor_addr}/0"),
            lua: &big_lua,
            pids,
        };
        let (nginx, copies) = big.run(addr, remote.as_ref()).await;
        nginx_big = Some(nginx);
        files.push(("big", copies.rps));
    }
    if runs("small") {
        let small = Copies {
            size: 200 * 1024,
            label: "200 KiB",
            nginx_url: format!("http://{nginx_addr}/small"),
            floor_url: format!("http://{floor_addr}/1"),
            lua: &small_lua,
            pids,
        };
        let (_, copies) = small.run(addr, remote.as_ref()).await;
        files.push(("small", copies.rps));
    }

    if runs("intake") {
        let fsync_dir = work.path().join("fsync");
        std::fs::create_dir_all(&fsync_dir).unwrap();
        let raw = fsync_reference(&fsync_dir, 200 * 1024, 16);
        row("write + fsync of 200 KiB files, 16 threads", rate(raw), &[]);
        let mut refs = vec![("write+fsync", raw)];
        if let Some(r) = &remote {
            let put = r.put_rate(200 * 1024, 16).await;
            row("S3 PUT of 200 KiB objects, 16 clients", put, &[]);
            let commits = r.commit_rate(16).await;
            row("PostgreSQL INSERT + COMMIT, 16 clients", commits, &[]);
            refs = vec![("S3 PUT", put.rps), ("PG commits", commits.rps)];
        }
        let intake = on_hoso(addr, pid, || {
            wrk(&format!("http://{addr}/"), 16, Some(&intake_lua))
        });
        row(
            "hoso intake of unique 200 KiB scans, 16 conn.",
            intake,
            &refs,
        );
        files.push(("intake", intake.rps));
    }

    if runs("pkcs11") {
        on_token(work.path(), &files).await;
    }

    // The log writer's batch alone (13 entries: its size at 32 connections), on SQLite.
    if runs("writer") && remote.is_none() {
        let dir = work.path().join("writer");
        std::fs::create_dir_all(&dir).unwrap();
        let rows = 13;
        let sqlx = AuditBatches::new(rows)
            .through_sqlx(&dir.join("sqlx.db"))
            .await;
        let label = |how: &str| format!("audit entries alone, {rows} a commit, {how}");
        row(&label("via sqlx"), rate(sqlx), &[]);
        let direct = AuditBatches::new(rows).in_process(&dir.join("direct.db"));
        row(&label("in process"), rate(direct), &[("via sqlx", sqlx)]);
    }

    if runs("memory") {
        // Memory: 64 readers of 1 MiB copies at once; the peak is this run's alone.
        let before = rss_kib(pid, "VmRSS");
        let many = on_hoso(addr, pid, || {
            wrk(&format!("http://{addr}/"), 64, Some(&big_lua))
        });
        let peak = many.peak_kib.unwrap_or(0);
        row(
            "hoso officer copy, 1 MiB, 64 connections",
            many,
            &nginx_big
                .map(|n| vec![("nginx@32", n.rps)])
                .unwrap_or_default(),
        );
        println!();
        println!(
            "hoso RSS: idle {} MiB, before the 64-reader run {} MiB, peak during it {} MiB: {} MiB above idle",
            idle / 1024,
            before / 1024,
            peak / 1024,
            peak.saturating_sub(idle) / 1024
        );
    }
    drop(server);
    if !runs("verify") {
        return;
    }

    let (rust_crypto, ring) = cipher_figures();
    println!();
    println!(
        "AES-256-GCM open, 64 KiB segments, one core: aes-gcm {rust_crypto:.0} MB/s, ring {ring:.0} MB/s"
    );

    // Timed on logs big enough that start-up does not count, at two sizes, so that the peak
    // memory shows whether it grows with the log (it must not).
    let target: i64 = std::env::var("HOSO_BENCH_VERIFY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    for size in [target / 4, target] {
        grow_log(&dir, size).await;
        let (took, peak, said) = time_verify(&dir);
        // What verify itself says it walked.
        let entries: i64 = said
            .split_whitespace()
            .skip_while(|w| *w != "intact:")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let rate = entries as f64 / took;
        println!(
            "hoso audit verify: {entries} entries in {took:.2} s = {rate:.0} entries/s, peak RSS {} MiB ({})",
            peak / 1024,
            said.trim()
        );
        let read = read_log_alone(&dir, entries).await;
        println!(
            "  the same entries read alone, no hashing (SQLite's file read / PostgreSQL's COPY, \
             parsed): {read:.0} entries/s; verify is {:.2} of it",
            rate / read
        );
    }
}

/// How fast the log's entries up to `upto` come out of the database, read as verify reads
/// them and dropped: the bound on verify's rate before any hash is computed.
async fn read_log_alone(dir: &Path, upto: i64) -> f64 {
    let app = hoso::app::App::open(settings_of(dir), false).await.unwrap();
    let (pages, mut received) =
        tokio::sync::mpsc::channel::<Result<hoso::db::audit::ChainPage, hoso::db::DbError>>(4);
    let started = Instant::now();
    let draining = tokio::spawn(async move {
        let mut n = 0;
        while let Some(page) = received.recv().await {
            n += page.unwrap().entries().count();
        }
        n
    });
    hoso::db::audit::read_chain(&app.vault.db, upto, pages).await;
    let n = draining.await.unwrap();
    assert_eq!(n as i64, upto, "read every entry");
    n as f64 / started.elapsed().as_secs_f64()
}

/// The crypto floor: the same sealed objects served from the same store by hoso's own body code
/// — read, authenticate and decrypt every segment, send — with no token, no grant, no audit
/// entry and no database on the way: what a copy costs before hoso's own work. `/0`, `/1`…
/// serve the documents named in `HOSO_BENCH_FLOOR` (`addr|vault dir|id,id…`). It runs as a
/// process of its own (this bench binary again), as `hoso serve` does, on the same kind of
/// runtime.
fn floor_main(spec: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut parts = spec.split('|');
        let addr: SocketAddr = parts.next().unwrap().parse().unwrap();
        let dir = PathBuf::from(parts.next().unwrap());
        let app = hoso::app::App::open(settings_of(&dir), false)
            .await
            .unwrap();
        let mut bodies = Vec::new();
        for id in parts.next().unwrap().split(',') {
            let id: uuid::Uuid = id.parse().unwrap();
            let row = hoso::db::documents::get(&app.vault.db.pool, id)
                .await
                .unwrap()
                .unwrap();
            let key = hoso::records::data_key(&app.vault, &row).unwrap();
            let binding = hoso::records::binding(&row).unwrap();
            bodies.push(std::sync::Arc::new((
                row.object_key,
                key,
                binding,
                row.size_bytes,
            )));
        }
        let blobs = app.vault.blobs.clone();
        let serve = move |axum::extract::Path(n): axum::extract::Path<usize>| {
            let (blobs, body) = (blobs.clone(), bodies[n].clone());
            async move {
                let (object, key, binding, size) = &*body;
                let mut sealed = blobs.read_all(object, Vec::new()).await.unwrap();
                let ranges =
                    hoso::crypto::envelope::open_in_place(key, binding, &mut sealed).unwrap();
                let owner = bytes::Bytes::from(sealed);
                let pieces = ranges
                    .into_iter()
                    .map(move |r| Ok::<_, std::convert::Infallible>(owner.slice(r)));
                axum::response::Response::builder()
                    .header("content-length", size.to_string())
                    .body(axum::body::Body::from_stream(futures_util::stream::iter(
                        pieces,
                    )))
                    .unwrap()
            }
        };
        let router = axum::Router::new().route("/{n}", axum::routing::get(serve));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        axum::serve(listener, router).await.unwrap();
    });
    std::process::exit(0)
}

/// The same copies and intake on a second vault whose keys are in a SoftHSM2 token: each data
/// key unwrapped (copies) or wrapped (intake) by the token, the audit heads and checkpoints
/// signed there, the blind index computed there. Each row's ratio is to the file store's row
/// of this run.
async fn on_token(work: &Path, files: &[(&str, f64)]) {
    let dir = work.join("vault-pkcs11");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pkcs11.env"), softhsm_token(&work.join("softhsm"))).unwrap();
    let (server, addr) = serve(&dir);
    let pid = server.0.id();
    let clerk = token(&dir, "clerk");
    let reference = |what: &str| {
        files
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, rps)| ("files", *rps))
            .collect::<Vec<_>>()
    };
    let reads = (seconds() as usize * 4).max(8);
    for (what, size, label, doc_type, seed) in [
        ("big", 1024 * 1024, "1 MiB", "cccd", 11),
        ("small", 200 * 1024, "200 KiB", "passport", 12),
    ] {
        let id = document(addr, &clerk, seed, size, doc_type).await;
        let tokens = grants(addr, &clerk, doc_type, reads * 2).await;
        let lua = dir.join(format!("{what}.lua"));
        std::fs::write(
            &lua,
            lua_tokens(&tokens, &format!("/v1/documents/{id}/content")),
        )
        .unwrap();
        let copies = on_hoso(addr, pid, || {
            wrk(&format!("http://{addr}/"), 32, Some(&lua))
        });
        row(
            &format!("hoso officer copy, {label}, 32 conn., keys in SoftHSM2"),
            copies,
            &reference(what),
        );
    }
    let lua = dir.join("intake.lua");
    std::fs::write(&lua, lua_intake(&clerk, 200 * 1024)).unwrap();
    let intake = on_hoso(addr, pid, || {
        wrk(&format!("http://{addr}/"), 16, Some(&lua))
    });
    row(
        "hoso intake, 200 KiB, 16 conn., keys in SoftHSM2",
        intake,
        &reference("intake"),
    );
}

/// Grows the vault's log to at least `target` entries of the shape a copy logs, through the
/// vault's own log writer (hash chain, Merkle tree, checkpoints and all), many at once.
/// The settings of the vault in `dir` on the backends `hoso serve` ran on (it inherits the same
/// variables).
fn settings_of(dir: &Path) -> hoso::config::Settings {
    let mut settings = hoso::config::Settings::embedded_in(dir);
    if let Ok(url) = std::env::var("HOSO_DATABASE_URL") {
        settings.database_url = url.parse().expect("HOSO_DATABASE_URL");
    }
    if let Ok(url) = std::env::var("HOSO_STORAGE_URL") {
        settings.storage_url = url.parse().expect("HOSO_STORAGE_URL");
    }
    settings
}

async fn grow_log(dir: &Path, target: i64) {
    use hoso::audit::{AuditAction, Entry};
    use hoso::domain::Role;
    let app = std::sync::Arc::new(hoso::app::App::open(settings_of(dir), false).await.unwrap());
    let mut last = 0;
    while last < target {
        let reads: Vec<_> = (0..2048).map(|i| bench_read(i as u64)).collect();
        // Every tenth read is through a grant that has its row (sealed, one use spent), so that
        // verify's grant check has rows to compare with the log, as on a vault in use.
        let mut tx = app.vault.db.begin().await.unwrap();
        for (grant, citizen) in reads.iter().step_by(10) {
            let row = bench_grant(*grant, *citizen);
            hoso::db::grants::insert(&mut tx, &row, &app.vault.keys())
                .await
                .unwrap();
        }
        tx.commit("bench grants").await.unwrap();
        let calls: Vec<_> = reads
            .into_iter()
            .map(|(grant, citizen)| {
                let app = app.clone();
                tokio::spawn(async move {
                    let mut entry = Entry::new(
                        "bench.officer".into(),
                        Role::Officer,
                        "BENCH".into(),
                        AuditAction::DocumentContent,
                    );
                    entry.document_id = Some(uuid::Uuid::now_v7().to_string());
                    entry.citizen_idx = Some(citizen);
                    entry.grant_id = Some(grant.to_string());
                    entry.case_ref = Some("000.00.31.H40-261124-0042".into());
                    app.vault
                        .log
                        .record(app.vault.keys(), entry)
                        .await
                        .unwrap()
                        .seq
                })
            })
            .collect();
        for call in calls {
            last = last.max(call.await.unwrap());
        }
    }
}

/// One read of [`grow_log`]: its grant's id and its citizen.
fn bench_read(i: u64) -> (uuid::Uuid, hoso::crypto::CitizenIndex) {
    let mut citizen = [0u8; 32];
    citizen[..8].copy_from_slice(&i.to_be_bytes());
    (uuid::Uuid::now_v7(), hoso::crypto::CitizenIndex(citizen))
}

/// The row of a grant of [`grow_log`] that one read spent.
fn bench_grant(id: uuid::Uuid, citizen: hoso::crypto::CitizenIndex) -> hoso::db::grants::GrantRow {
    let now = hoso::db::now_ms();
    hoso::db::grants::GrantRow {
        id,
        citizen_idx: citizen,
        doc_types: vec![hoso::domain::DocType::Cccd],
        case_ref: "000.00.31.H40-261124-0042".into(),
        purpose: "bench".into(),
        grantee: "bench.officer".into(),
        grantee_office: "BENCH".into(),
        created_by: "bench.clerk".into(),
        office: "BENCH".into(),
        created_at: now,
        expires_at: now + 86_400_000,
        max_uses: 1,
        uses: 1,
        revoked_at: None,
    }
}

/// Runs `hoso audit verify` and returns its wall time, its peak RSS (KiB, sampled from /proc
/// while it runs) and what it printed.
fn time_verify(dir: &Path) -> (f64, u64, String) {
    let started = Instant::now();
    let mut child = hoso(dir)
        .args(["audit", "verify"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(rss_kib(child.id(), "VmHWM"));
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed().as_secs_f64();
    let out = child.wait_with_output().unwrap();
    (
        took,
        peak,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
