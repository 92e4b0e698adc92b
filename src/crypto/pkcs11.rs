//! The PKCS#11 key store (`HOSO_KEY_STORE=pkcs11`): keys that live in a hardware security
//! module and never leave it.
//!
//! - Master keys (KEKs): each version an AES-256 key generated inside the token — `CKA_TOKEN`,
//!   `CKA_PRIVATE`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, allowed mechanism AES-GCM only —
//!   labelled `{prefix}-kek-{version:06}`; a data key is wrapped with `C_Encrypt` (AES-GCM, a
//!   12-byte IV from the token's random generator, the same associated data the file store
//!   binds) and unwrapped with `C_Decrypt`. See [`super::envelope`] for the wrapped key's byte
//!   layout, which carries the store's tag.
//! - Signing keys: an Ed25519 pair per purpose, `{prefix}-{purpose}-ed25519`, `CKM_EDDSA`.
//! - The blind-index key: an HMAC-SHA-256 key, `{prefix}-blind-index-hmac`, `CKM_SHA256_HMAC`.
//!
//! A PKCS#11 call blocks and cannot be interrupted, so requests never make one themselves: the
//! calls run on a few worker threads, each with its own session (`Session` is `Send`, not
//! `Sync`), and a caller waits for the answer at most the timeout ([`Workers`]). `C_Initialize`
//! runs once per process and module ([`Module`]); a session the token dropped is thrown away and
//! a fresh one opened and logged in; when none opens at all, or the module says its state is
//! broken (`CKR_GENERAL_ERROR`), the module is finalised and initialised again and the call
//! tried again. The PIN is read once from its file and kept only as a secret; it is in no
//! message, log line, metric or setting's value.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::config::HsmSettings;

/// Why the token could not be used, in words for the operator (never the PIN).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HsmError {
    /// Set up wrongly: the module, the token label, the PIN. Start-up stops on it.
    #[error("{0}")]
    Setting(String),
    /// The token did not do what was asked (gone, failing): try again later.
    #[error("the hardware security module is unavailable: {0}")]
    Unavailable(String),
    /// The token refused the ciphertext: it was changed or moved.
    #[error("the hardware security module refused the wrapped key: it failed authentication")]
    Integrity,
}

/// How a timed-out operation's error starts (the metrics count these apart).
const NOT_ANSWERING: &str = "the token did not answer";

/// An open token, logged in, used through a few worker threads, each with its session.
pub struct Hsm {
    token: Arc<Token>,
    prefix: String,
    handles: Arc<Handles>,
    workers: Workers<Open>,
    stats: Stats,
}

/// What a worker needs to open and log in a session: the module, and the token's label (its
/// slot is found again after the module is initialised again).
struct Token {
    module: Arc<Module>,
    label: String,
    pin: AuthPin,
    /// The token's slot as of a module generation.
    slot: Mutex<(Slot, u64)>,
}

/// A loaded PKCS#11 module, one per process and path. When the token is lost at the module's
/// level (a network HSM's client that lost its server: every new session fails; a module whose
/// state is broken: see [`module_lost`]), the module
/// is finalised and initialised again, at most once a second, while no call is in it; each
/// time its generation grows, and sessions of an older generation are gone with it.
struct Module {
    ctx: Pkcs11,
    /// Calls hold it shared; initialising again holds it alone. A writer waiting holds back
    /// new readers (parking_lot's lock is fair), so calls cannot starve a restart.
    calls: parking_lot::RwLock<()>,
    generation: AtomicU64,
    last_restart: Mutex<Option<Instant>>,
}

impl Module {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Finalises and initialises the module again, unless another worker did since `seen`,
    /// or it was tried less than a second ago.
    /// Calls in the module keep it shared: this waits for them a quarter of a second at most,
    /// then gives up rather than wait for one that is stuck (and hold up every worker behind
    /// it), and the next failure tries again. `why` is for the operator's log line.
    fn restart(&self, seen: u64, why: &str) {
        let Some(_alone) = self.calls.try_write_for(Duration::from_millis(250)) else {
            return;
        };
        if self.generation() != seen {
            return;
        }
        let Ok(mut last) = self.last_restart.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        let _ = self.ctx.clone().finalize();
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                tracing::warn!("the PKCS#11 module was initialised again: {why}");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the PKCS#11 module did not initialise again ({why})")
            }
        }
        // Finalised either way: every session opened before is gone.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// A worker's session, of the module generation it was opened in. One of an older generation
/// was closed by the module's finalisation: it is forgotten, never closed again (its handle
/// may be another session's by now).
struct Open {
    session: Option<Session>,
    generation: u64,
    module: Arc<Module>,
}

impl Drop for Open {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // Closed only while no restart can run, and only if of this generation; when that
        // cannot be known now, forgotten (a session leaked is better than another closed).
        match self.module.calls.try_read() {
            Some(_shared) if self.module.generation() == self.generation => drop(session),
            _ => std::mem::forget(session),
        }
    }
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The errors that mean the session (or the token under it) is gone, not that the request was
/// wrong: the session is dropped and a fresh one opened next time.
fn session_lost(e: &Error) -> bool {
    matches!(e, Error::Pkcs11(rv, _) if matches!(rv,
        RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::DeviceRemoved
        | RvError::DeviceError | RvError::TokenNotPresent | RvError::TokenNotRecognized
        | RvError::UserNotLoggedIn | RvError::SlotIdInvalid | RvError::CryptokiNotInitialized))
}

/// The errors after which only initialising the module again may mend the token: it is gone at
/// the module's level, or the module's state is broken. PKCS#11 says of `CKR_GENERAL_ERROR`
/// that the token may be left inconsistent; SoftHSM2 answers it for every write and log-in,
/// until it is initialised again, once it has read its token's files while another process
/// rewrote them (its `OSToken::index` marks the token invalid and never reads it again).
fn module_lost(e: &Error) -> bool {
    matches!(e, Error::Pkcs11(rv, _) if matches!(rv,
        RvError::CryptokiNotInitialized | RvError::DeviceRemoved | RvError::DeviceError
        | RvError::TokenNotPresent | RvError::TokenNotRecognized | RvError::SlotIdInvalid
        | RvError::GeneralError))
}

fn unavailable(e: Error) -> HsmError {
    HsmError::Unavailable(e.to_string())
}

impl Token {
    /// A fresh session, logged in. An error that says the token (or the module's link to it)
    /// is gone, not this session, is [`Failure::module_lost`].
    fn open_session(&self, generation: u64) -> Result<Open, Failure> {
        let slot = {
            let mut known = self.slot.lock().map_err(|_| {
                Failure::here(HsmError::Unavailable("a PKCS#11 lock was poisoned".into()))
            })?;
            if known.1 != generation {
                // No slot with the token's label: it is not there.
                let slot = find_slot(&self.module.ctx, &self.label).map_err(|e| Failure {
                    error: HsmError::Unavailable(e.to_string()),
                    module_lost: true,
                    passing: false,
                })?;
                *known = (slot, generation);
            }
            known.0
        };
        let session = self.module.ctx.open_rw_session(slot).map_err(Failure::of)?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(Open {
                session: Some(session),
                generation,
                module: self.module.clone(),
            }),
            // A token the module read while another process rewrote it (SoftHSM2) shows no
            // PIN until it is read again.
            Err(e @ Error::Pkcs11(RvError::UserPinNotInitialized, _)) => Err(Failure {
                error: unavailable(e),
                module_lost: true,
                passing: true,
            }),
            Err(e) => Err(Failure::of(e)),
        }
    }

    /// Runs `f` on the worker's session (opened and logged in if it has none). A session the
    /// token lost (it was removed, restarted) is dropped and `f` tried once more on a fresh one.
    /// When the token is lost at the module's level, the module is initialised again (at most
    /// once a second). Then, or when the failure may pass by itself ([`Failure::passing`]), `f`
    /// is tried again, three times at most and only while the caller still waits (`wanted`):
    /// at once if the module was initialised again (here or by another worker), else after a
    /// pause. A SoftHSM2 that read its token's files while another process
    /// rewrote them fails now and then, or until it is initialised again: either way the call
    /// that met it need not fail.
    fn run<T>(
        &self,
        session: &mut Option<Open>,
        f: &impl Fn(&Session) -> Result<T, Error>,
        wanted: &dyn Fn() -> bool,
    ) -> Result<T, HsmError> {
        let mut tries = 0;
        loop {
            let (result, generation) = {
                let _shared = self.module.calls.read();
                // Read under the lock: no restart between it and the calls below.
                let generation = self.module.generation();
                (self.run_in(generation, session, f), generation)
            };
            let failure = match result {
                Ok(value) => return Ok(value),
                Err(failure) if !failure.module_lost && !failure.passing => {
                    return Err(failure.error);
                }
                Err(failure) => failure,
            };
            if failure.module_lost {
                self.module.restart(
                    generation,
                    &format!("it lost its token ({})", failure.error),
                );
            }
            let restarted = self.module.generation() != generation;
            tries += 1;
            if tries > 3 || !(restarted || failure.passing) {
                return Err(failure.error);
            }
            if !restarted {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !wanted() {
                return Err(failure.error);
            }
        }
    }

    fn run_in<T>(
        &self,
        generation: u64,
        session: &mut Option<Open>,
        f: &impl Fn(&Session) -> Result<T, Error>,
    ) -> Result<T, Failure> {
        for _ in 0..2 {
            let open = match session.take() {
                Some(open) if open.generation == generation => open,
                _ => self.open_session(generation)?,
            };
            let Some(live) = open.session.as_ref() else {
                continue;
            };
            match f(live) {
                Ok(value) => {
                    *session = Some(open);
                    return Ok(value);
                }
                Err(e) if session_lost(&e) => drop(open),
                Err(e) => {
                    *session = Some(open);
                    return Err(Failure::of(e));
                }
            }
        }
        Err(Failure::here(HsmError::Unavailable(
            "the token lost two sessions in a row".into(),
        )))
    }
}

/// A call that failed, and whether the token is lost at the module's level (every new session
/// fails, or the module's state is broken: [`module_lost`]), which initialising the module
/// again may mend.
struct Failure {
    error: HsmError,
    module_lost: bool,
    /// Whether the same call may succeed a moment later, module initialised again or not:
    /// `CKR_GENERAL_ERROR`, which SoftHSM2 also answers while another process writes the token,
    /// and `CKR_FUNCTION_FAILED`, after which PKCS#11 says the same call made again may succeed
    /// (SoftHSM2 answers it when a key it was making could not be read back).
    passing: bool,
}

impl Failure {
    fn here(error: HsmError) -> Self {
        Self {
            error,
            module_lost: false,
            passing: false,
        }
    }

    fn of(e: Error) -> Self {
        Self {
            module_lost: module_lost(&e),
            passing: matches!(
                e,
                Error::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _)
            ),
            error: unavailable(e),
        }
    }
}

/// The handles of the keys in use, found once by label: a search walks every object in the
/// token (hundreds, with many vaults on one), a use is then one call. A handle the token no
/// longer knows (the key was destroyed, the token re-inserted) is forgotten and searched for
/// once more. Handles are numbers the module gives out again after it is initialised again, so
/// the map holds one module generation's handles only.
struct Handles {
    module: Arc<Module>,
    known: Mutex<(u64, HandleMap)>,
}

/// Key handles by object class and label.
type HandleMap = HashMap<(String, Vec<u8>), ObjectHandle>;

impl Handles {
    fn new(module: Arc<Module>) -> Self {
        let generation = module.generation();
        Self {
            module,
            known: Mutex::new((generation, HashMap::new())),
        }
    }

    fn use_key<T>(
        &self,
        s: &Session,
        class: ObjectClass,
        label: &[u8],
        f: impl Fn(ObjectHandle) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let name = (class.to_string(), label.to_vec());
        let generation = self.module.generation();
        let cached = self.known.lock().ok().and_then(|mut known| {
            if known.0 != generation {
                *known = (generation, HashMap::new());
            }
            known.1.get(&name).copied()
        });
        if let Some(key) = cached {
            match f(key) {
                Err(Error::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)) => {
                    self.forget(&name.1);
                }
                other => return other,
            }
        }
        let key = Hsm::find_one(s, class, label)?.ok_or(Error::Pkcs11(
            RvError::KeyHandleInvalid,
            Function::FindObjects,
        ))?;
        if let Ok(mut known) = self.known.lock()
            && known.0 == generation
        {
            known.1.insert(name, key);
        }
        f(key)
    }

    fn forget(&self, label: &[u8]) {
        if let Ok(mut known) = self.known.lock() {
            known.1.retain(|(_, l), _| l != label);
        }
    }
}

/// What a token operation was, for the metrics.
#[derive(Clone, Copy)]
enum Op {
    Wrap,
    Unwrap,
    Sign,
    Index,
    Keys,
}

const OPS: [(Op, &str); 5] = [
    (Op::Wrap, "wrap"),
    (Op::Unwrap, "unwrap"),
    (Op::Sign, "sign"),
    (Op::Index, "blind_index"),
    (Op::Keys, "keys"),
];

/// Counts of token operations by kind and outcome, and the time callers waited for them.
#[derive(Default)]
struct Stats {
    ok: [AtomicU64; 5],
    failed: [AtomicU64; 5],
    timed_out: [AtomicU64; 5],
    micros: [AtomicU64; 5],
}

/// A call for a worker, given the worker's own state (its session).
type Job<S> = Box<dyn FnOnce(&mut Option<S>) + Send>;

/// The worker threads that call the module. A PKCS#11 call cannot be interrupted, so a caller
/// (an async request) never makes one itself: it hands the call to a worker and waits at most
/// the timeout. A token that stops answering then costs each request that timeout, and once
/// every worker has been stuck longer than it, nothing at all: callers fail at once.
struct Workers<S> {
    /// Taken (closed) when the store is dropped: each worker then ends its session and says so.
    jobs: Mutex<Option<mpsc::Sender<Job<S>>>>,
    ended: Mutex<mpsc::Receiver<()>>,
    count: usize,
    /// Per worker: when its current call started (ms since `epoch`, 0 when idle).
    busy_since: Arc<Vec<AtomicU64>>,
    epoch: Instant,
    timeout: Duration,
}

impl<S: Send + 'static> Workers<S> {
    /// `first`, when given, is the first worker's state (a session already open).
    fn start(count: usize, timeout: Duration, mut first: Option<S>) -> Self {
        let (tx, rx) = mpsc::channel::<Job<S>>();
        let rx = Arc::new(Mutex::new(rx));
        let (end, ended) = mpsc::channel();
        let busy_since: Arc<Vec<AtomicU64>> =
            Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
        let epoch = Instant::now();
        for i in 0..count {
            let (rx, busy, end) = (rx.clone(), busy_since.clone(), end.clone());
            let own = first.take();
            std::thread::Builder::new()
                .name(format!("hoso-pkcs11-{i}"))
                .spawn(move || {
                    let mut session = own;
                    while let Some(job) = rx.lock().ok().and_then(|rx| rx.recv().ok()) {
                        let started = epoch.elapsed().as_millis().max(1) as u64;
                        busy[i].store(started, Ordering::Relaxed);
                        // A call that panics costs its session, not the worker.
                        let run = std::panic::AssertUnwindSafe(|| job(&mut session));
                        if std::panic::catch_unwind(run).is_err() {
                            session = None;
                        }
                        busy[i].store(0, Ordering::Relaxed);
                    }
                    drop(session);
                    let _ = end.send(());
                })
                .expect("a thread for the PKCS#11 module");
        }
        Self {
            jobs: Mutex::new(Some(tx)),
            ended: Mutex::new(ended),
            count,
            busy_since,
            epoch,
            timeout,
        }
    }

    /// Whether every worker is inside a call that has run past the timeout.
    fn all_stuck(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let limit = self.timeout.as_millis() as u64;
        self.busy_since.iter().all(|b| {
            let since = b.load(Ordering::Relaxed);
            since != 0 && now.saturating_sub(since) > limit
        })
    }

    /// Hands `f` to a worker and waits for its answer at most the timeout. `f` is also given
    /// whether its caller still waits, so that it tries nothing again once it does not.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Option<S>, &dyn Fn() -> bool) -> Result<T, HsmError> + Send + 'static,
    ) -> Result<T, HsmError> {
        let not_answering = || {
            HsmError::Unavailable(format!(
                "{NOT_ANSWERING} within {} ms",
                self.timeout.as_millis()
            ))
        };
        if self.all_stuck() {
            return Err(not_answering());
        }
        let (reply, answer) = mpsc::sync_channel(1);
        // A call whose caller has stopped waiting is not made late (a key destroyed or made
        // after the caller was told it failed).
        let wanted = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let still_wanted = wanted.clone();
        let job: Job<S> = Box::new(move |state| {
            if still_wanted.load(Ordering::Acquire) {
                let _ = reply.send(f(state, &|| still_wanted.load(Ordering::Acquire)));
            }
        });
        let sent = self
            .jobs
            .lock()
            .map(|jobs| jobs.as_ref().map(|jobs| jobs.send(job)));
        if !matches!(sent, Ok(Some(Ok(())))) {
            return Err(HsmError::Unavailable(
                "the token's workers have stopped".into(),
            ));
        }
        // On the async runtime's threads, waiting hands the thread's other tasks to another.
        let wait = || answer.recv_timeout(self.timeout);
        let answered = match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        answered.unwrap_or_else(|_| {
            wanted.store(false, Ordering::Release);
            Err(not_answering())
        })
    }
}

/// The workers close their sessions before the store is gone: a session closed while the
/// process exits (the module's own teardown running) can crash it. A worker stuck in a call
/// is waited for a second, no longer.
impl<S> Drop for Workers<S> {
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let Ok(ended) = self.ended.lock() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        for _ in 0..self.count {
            let left = deadline.saturating_duration_since(Instant::now());
            if ended.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

impl Hsm {
    /// Loads the module, initialises it, finds the token by label and logs in with the PIN in
    /// `pin_file`. Each failure is one line saying which setting to fix.
    pub fn open(s: &HsmSettings, keys_dir: &Path, create: bool) -> Result<Self, HsmError> {
        let prefix = match &s.label_prefix {
            Some(p) => p.clone(),
            None => own_prefix(keys_dir, create)?,
        };
        let module = context(&s.module)?;
        let pin = read_pin(&s.pin_file)?;
        let (slot, generation, session) = log_in(&module, s, &pin)?;
        // The session logged in stays open, a worker's: the log-in lasts while any session
        // does, so the other workers' sessions find it made rather than log in again.
        let first = Open {
            session: Some(session),
            generation,
            module: module.clone(),
        };
        let token = Arc::new(Token {
            slot: Mutex::new((slot, generation)),
            module,
            label: s.token_label.clone(),
            pin,
        });
        // Enough workers for the cores to keep the token busy; a few more so one slow call
        // does not hold up the rest.
        let count = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
            * 2;
        Ok(Self {
            workers: Workers::start(count, s.timeout, Some(first)),
            handles: Arc::new(Handles::new(token.module.clone())),
            token,
            prefix,
            stats: Stats::default(),
        })
    }

    /// Runs `f` on a worker's session and waits for it at most the timeout (see [`Workers`]).
    fn with_session<T: Send + 'static>(
        &self,
        op: Op,
        f: impl Fn(&Session) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, HsmError> {
        let started = Instant::now();
        let result = self.call(f);
        let i = op as usize;
        let counter = match &result {
            Ok(_) => &self.stats.ok[i],
            Err(HsmError::Unavailable(why)) if why.starts_with(NOT_ANSWERING) => {
                &self.stats.timed_out[i]
            }
            Err(_) => &self.stats.failed[i],
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let waited = started.elapsed().as_micros() as u64;
        self.stats.micros[i].fetch_add(waited, Ordering::Relaxed);
        result
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl Fn(&Session) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, HsmError> {
        let token = self.token.clone();
        self.workers
            .call(move |session, wanted| token.run(session, &f, wanted))
    }

    /// Has the module read the token afresh: initialises it again, waiting out the second
    /// between two initialisations (two seconds at most). For a key this vault made that a
    /// search did not find: a SoftHSM2 that read its token's files while another process
    /// rewrote them may hold a copy of the token without some of its objects until then. The
    /// caller looks again. Whether it was done: a call stuck in the module, or a module that
    /// would not finalise, leaves the old copy (and the caller makes nothing on it).
    /// Like every call into the module, it runs on a worker, and its caller waits at most the
    /// timeout.
    pub fn read_again(&self) -> bool {
        let module = self.token.module.clone();
        let restarted = move |_: &mut Option<Open>, _: &dyn Fn() -> bool| {
            let seen = module.generation();
            let deadline = Instant::now() + Duration::from_secs(2);
            while module.generation() == seen && Instant::now() < deadline {
                module.restart(seen, "a key this vault made was not found in its token");
                if module.generation() == seen {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(module.generation() != seen)
        };
        self.workers.call(restarted).unwrap_or(false)
    }

    /// Whether the token answers now (`/readyz`): one call that reaches it, on a worker's
    /// session, bounded by the timeout like any other.
    pub fn ready(&self) -> bool {
        self.with_session(Op::Keys, |s| s.get_session_info().map(|_| ()))
            .is_ok()
    }

    /// The token's operations as Prometheus counters: count by kind and outcome, and the
    /// seconds callers waited, by kind.
    pub fn render_metrics(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::from("# TYPE hoso_hsm_operations_total counter\n");
        for (op, name) in OPS {
            let i = op as usize;
            for (outcome, counter) in [
                ("ok", &self.stats.ok[i]),
                ("error", &self.stats.failed[i]),
                ("timeout", &self.stats.timed_out[i]),
            ] {
                out.push_str(&format!(
                    "hoso_hsm_operations_total{{op=\"{name}\",outcome=\"{outcome}\"}} {}\n",
                    get(counter)
                ));
            }
        }
        out.push_str("# TYPE hoso_hsm_operation_seconds_sum counter\n");
        for (op, name) in OPS {
            out.push_str(&format!(
                "hoso_hsm_operation_seconds_sum{{op=\"{name}\"}} {:.6}\n",
                get(&self.stats.micros[op as usize]) as f64 / 1e6
            ));
        }
        out
    }

    fn kek_label(&self, version: u32) -> Vec<u8> {
        format!("{}-kek-{version:06}", self.prefix).into_bytes()
    }

    /// The KEK versions the token holds under this store's prefix, sorted.
    pub fn kek_versions(&self) -> Result<Vec<u32>, HsmError> {
        let start = format!("{}-kek-", self.prefix);
        let labels = self.with_session(Op::Keys, |s| {
            let handles = s.find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Private(true),
            ])?;
            let mut labels = Vec::new();
            for h in handles {
                // A key another session destroyed since the search is simply gone, and one
                // another vault on the token is making may not read yet: the search finds every
                // vault's keys, and another's must not fail this one.
                let Ok(attrs) = s.get_attributes(h, &[AttributeType::Label]) else {
                    continue;
                };
                for attr in attrs {
                    if let Attribute::Label(l) = attr {
                        labels.push(l);
                    }
                }
            }
            Ok(labels)
        })?;
        let mut versions: Vec<u32> = labels
            .iter()
            .filter_map(|l| std::str::from_utf8(l).ok())
            .filter_map(|l| l.strip_prefix(&start))
            .filter_map(|digits| digits.parse().ok())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    /// Generates KEK `version` inside the token: AES-256, sensitive, never extractable, usable
    /// for AES-GCM only.
    pub fn generate_kek(&self, version: u32) -> Result<(), HsmError> {
        let label = self.kek_label(version);
        self.make(move |s, again| Self::make_kek(s, &label, again))
    }

    /// Runs `f`, which writes a key into the token, trying again when the token answers
    /// CKR_TEMPLATE_INCONSISTENT: SoftHSM2's file store answers it now and then when several
    /// processes write the token at once. The fourth such answer is the error. (A
    /// CKR_GENERAL_ERROR or CKR_FUNCTION_FAILED, which it answers too, is tried again as for
    /// every call: [`Token::run`].) `f` is told whether a try came before (`again`): SoftHSM2
    /// does not always undo what a failed try made, and the session that made it may still
    /// show it though it was never written whole, so a try again first destroys whatever is
    /// under the key's label (nothing of the vault's is there: the caller found it absent)
    /// rather than take it.
    fn make<T: Send + 'static>(
        &self,
        f: impl Fn(&Session, bool) -> Result<T, Error> + Clone + Send + 'static,
    ) -> Result<T, HsmError> {
        let mut last = String::new();
        let tried = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for _ in 0..4 {
            let (f, tried) = (f.clone(), tried.clone());
            let made = self.with_session(Op::Keys, move |s| {
                match f(s, tried.swap(true, Ordering::AcqRel)) {
                    Ok(value) => Ok(Ok(value)),
                    Err(e @ Error::Pkcs11(RvError::TemplateInconsistent, _)) => {
                        Ok(Err(e.to_string()))
                    }
                    Err(e) => Err(e),
                }
            })?;
            match made {
                Ok(value) => return Ok(value),
                Err(said) => last = said,
            }
        }
        Err(HsmError::Unavailable(format!(
            "the token would not make a key: {last}"
        )))
    }

    /// Makes the key labelled `label` unless it is there (another process made it). A key
    /// already there is used only if it is one the vault would make: AES-256 generated in the
    /// token, sensitive, never extractable. A try `again` takes nothing (see [`Self::make`]).
    fn make_kek(s: &Session, label: &[u8], again: bool) -> Result<(), Error> {
        if again {
            Self::remove_labelled(s, &[ObjectClass::SECRET_KEY], label)?;
        } else if let Some(key) = Self::find_one(s, ObjectClass::SECRET_KEY, label)? {
            let attrs = s.get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Local,
                    AttributeType::ValueLen,
                ],
            )?;
            let sound = attrs.iter().all(|a| match a {
                Attribute::Sensitive(b) | Attribute::NeverExtractable(b) | Attribute::Local(b) => {
                    *b
                }
                Attribute::ValueLen(n) => u64::from(*n) == 32,
                _ => true,
            }) && attrs.len() == 4;
            if !sound {
                return Err(Error::Pkcs11(
                    RvError::KeyTypeInconsistent,
                    Function::GetAttributeValue,
                ));
            }
            return Ok(());
        }
        let mut template = sealed(label, MechanismType::AES_GCM);
        template.extend([
            Attribute::ValueLen(32.into()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
        ]);
        s.generate_key(&Mechanism::AesKeyGen, &template).map(|_| ())
    }

    /// Destroys KEK `version` in the token. The caller has proved no data key uses it.
    pub fn destroy_kek(&self, version: u32) -> Result<(), HsmError> {
        let label = self.kek_label(version);
        self.handles.forget(&label);
        self.with_session(Op::Keys, move |s| {
            if let Some(h) = Self::find_one(s, ObjectClass::SECRET_KEY, &label)? {
                s.destroy_object(h)?;
            }
            Ok(())
        })
    }

    /// AES-GCM with KEK `version` under a fresh 12-byte IV from the token: `iv | ciphertext |
    /// tag`.
    pub fn seal(&self, version: u32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let label = self.kek_label(version);
        let (aad, plaintext) = (aad.to_vec(), Zeroizing::new(plaintext.to_vec()));
        let handles = self.handles.clone();
        self.with_session(Op::Wrap, move |s| {
            handles.use_key(s, ObjectClass::SECRET_KEY, &label, |key| {
                let mut iv = [0u8; 12];
                s.generate_random_slice(&mut iv)?;
                let sealed = s.encrypt(
                    &Mechanism::AesGcm(GcmParams::new(&mut iv, &aad, 128.into())?),
                    key,
                    &plaintext,
                )?;
                // The IV as the call left it: a token that chooses its own writes it back.
                let mut out = iv.to_vec();
                out.extend_from_slice(&sealed);
                Ok(out)
            })
        })
    }

    /// The inverse of [`Hsm::seal`]; a changed byte is [`HsmError::Integrity`].
    pub fn open_sealed(
        &self,
        version: u32,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if sealed.len() < 12 + 16 {
            return Err(HsmError::Integrity);
        }
        let label = self.kek_label(version);
        let (aad, sealed) = (aad.to_vec(), sealed.to_vec());
        let handles = self.handles.clone();
        let opened = self.with_session(Op::Unwrap, move |s| {
            handles.use_key(s, ObjectClass::SECRET_KEY, &label, |key| {
                let mut iv = [0u8; 12];
                iv.copy_from_slice(&sealed[..12]);
                let mechanism = Mechanism::AesGcm(GcmParams::new(&mut iv, &aad, 128.into())?);
                match s.decrypt(&mechanism, key, &sealed[12..]) {
                    Ok(plain) => Ok(Some(Zeroizing::new(plain))),
                    // A GCM tag that does not check: SoftHSM2 says CKR_GENERAL_ERROR (others
                    // CKR_ENCRYPTED_DATA_INVALID). The session is fine; the ciphertext is not.
                    // Said by C_Decrypt only: before it (C_DecryptInit), a general error is
                    // the module's, mended like any other (`module_lost`).
                    Err(Error::Pkcs11(RvError::GeneralError, Function::Decrypt))
                    | Err(Error::Pkcs11(
                        RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange
                        | RvError::DataInvalid,
                        _,
                    )) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        })?;
        opened.ok_or(HsmError::Integrity)
    }

    /// Whether the token refuses to give out KEK `version`'s value (`CKA_VALUE` is sensitive),
    /// as it must: for the test that proves it, and for `hoso keys status`.
    pub fn kek_value_is_sealed(&self, version: u32) -> Result<bool, HsmError> {
        self.value_is_sealed(ObjectClass::SECRET_KEY, self.kek_label(version))
    }

    /// The same of the private half of the `purpose` signing key.
    pub fn signing_value_is_sealed(&self, purpose: &str) -> Result<bool, HsmError> {
        self.value_is_sealed(ObjectClass::PRIVATE_KEY, self.signing_label(purpose))
    }

    /// The same of the blind-index key.
    pub fn index_value_is_sealed(&self) -> Result<bool, HsmError> {
        self.value_is_sealed(ObjectClass::SECRET_KEY, self.index_label())
    }

    fn value_is_sealed(&self, class: ObjectClass, label: Vec<u8>) -> Result<bool, HsmError> {
        self.with_session(Op::Keys, move |s| {
            let Some(key) = Self::find_one(s, class, &label)? else {
                return Ok(false);
            };
            let info = s.get_attribute_info(key, &[AttributeType::Value])?;
            let extractable = s.get_attributes(key, &[AttributeType::Extractable])?;
            Ok(matches!(info.first(), Some(AttributeInfo::Sensitive))
                && extractable
                    .iter()
                    .all(|a| !matches!(a, Attribute::Extractable(true))))
        })
    }
}

/// The DER of Ed25519's object identifier (1.3.101.112, RFC 8410): `CKA_EC_PARAMS` of an
/// Edwards-curve key made for Ed25519.
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2B, 0x65, 0x70];

/// The signing keys: an Ed25519 key pair per purpose (tokens, attestations, audit, export),
/// both halves labelled `{prefix}-{purpose}-ed25519`.
impl Hsm {
    fn signing_label(&self, purpose: &str) -> Vec<u8> {
        format!("{}-{purpose}-ed25519", self.prefix).into_bytes()
    }

    /// The one object of `class` labelled `label`. Two such (two processes made one at once)
    /// are refused rather than one picked: a data key wrapped under one would not open under
    /// the other, a signature by one would not check under the other's public key.
    ///
    /// Only private objects are looked at (`CKA_PRIVATE`: made in a session logged in with the
    /// PIN), so an object planted through a session without the PIN is never taken for the
    /// vault's; and a secret or private key is used only if the token keeps it sensitive and
    /// not extractable.
    fn find_one(
        session: &Session,
        class: ObjectClass,
        label: &[u8],
    ) -> Result<Option<ObjectHandle>, Error> {
        let refused = |function| Err(Error::Pkcs11(RvError::KeyHandleInvalid, function));
        let found = session.find_objects(&[
            Attribute::Class(class),
            Attribute::Private(true),
            Attribute::Label(label.to_vec()),
        ])?;
        if found.len() > 1 {
            return refused(Function::FindObjects);
        }
        let Some(key) = found.into_iter().next() else {
            return Ok(None);
        };
        if class != ObjectClass::PUBLIC_KEY {
            let attrs = session
                .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])?;
            let sealed = attrs.len() == 2
                && attrs.iter().all(|a| {
                    matches!(
                        a,
                        Attribute::Sensitive(true) | Attribute::Extractable(false)
                    )
                });
            if !sealed {
                return refused(Function::GetAttributeValue);
            }
        }
        Ok(Some(key))
    }

    /// The public half of the `purpose` signing key, if the token holds that key: 32 bytes,
    /// from `CKA_EC_POINT` (a DER OCTET STRING, or the bare point as some tokens give it).
    pub fn signing_public(&self, purpose: &str) -> Result<Option<[u8; 32]>, HsmError> {
        let label = self.signing_label(purpose);
        let point = self.with_session(Op::Keys, move |s| {
            if Self::find_one(s, ObjectClass::PRIVATE_KEY, &label)?.is_none() {
                return Ok(None);
            }
            let Some(public) = Self::find_one(s, ObjectClass::PUBLIC_KEY, &label)? else {
                return Ok(None);
            };
            Ok(ec_point(
                s.get_attributes(public, &[AttributeType::EcPoint])?,
            ))
        })?;
        point
            .map(|point| ed25519_point(purpose, &point))
            .transpose()
    }

    /// Destroys every object of `classes` labelled `label`: what a try before left.
    fn remove_labelled(s: &Session, classes: &[ObjectClass], label: &[u8]) -> Result<(), Error> {
        for class in classes {
            for h in
                s.find_objects(&[Attribute::Class(*class), Attribute::Label(label.to_vec())])?
            {
                s.destroy_object(h)?;
            }
        }
        Ok(())
    }

    /// Generates the `purpose` Ed25519 key pair inside the token: the private half sensitive,
    /// never extractable, usable for EdDSA signatures only. Returns the public half, read
    /// through the handle the generation gave, in its session: a search by label in another
    /// session may miss the new pair while another process rewrites the token's files
    /// (SoftHSM2). A try made again after a failure first destroys what an earlier try left
    /// (see [`Self::make`]).
    pub fn generate_signing(&self, purpose: &str) -> Result<[u8; 32], HsmError> {
        let label = self.signing_label(purpose);
        let point = self.make(move |s, again| {
            if again {
                Self::remove_labelled(s, &PAIR, &label)?;
            }
            let (public, _) = s.generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &signing_public_template(&label),
                &signing_private_template(&label),
            )?;
            // Made: a failure from here on must not make the pair again, so it falls back to
            // the search below.
            let attrs = s.get_attributes(public, &[AttributeType::EcPoint]);
            Ok(attrs.ok().and_then(ec_point))
        })?;
        match point {
            Some(point) => ed25519_point(purpose, &point),
            None => self.signing_public(purpose)?.ok_or_else(|| {
                HsmError::Unavailable(format!("the token made no {purpose} key pair"))
            }),
        }
    }

    /// Puts an Ed25519 key a file held into the token (`hoso keys migrate`), so signatures made
    /// before stay checkable under the same public key. `seed` is RFC 8032's 32-byte private
    /// key. Unlike a key the token generated, it was outside once: `CKA_LOCAL` is false. The
    /// caller has found no whole pair under the label.
    pub fn import_signing(
        &self,
        purpose: &str,
        seed: &[u8; 32],
        public: &[u8; 32],
    ) -> Result<(), HsmError> {
        let label = self.signing_label(purpose);
        let mut private = signing_private_template(&label);
        private.extend([
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(cryptoki::object::KeyType::EC_EDWARDS),
            Attribute::EcParams(ED25519_PARAMS.to_vec()),
            Attribute::Value(seed.to_vec()),
        ]);
        let mut point = vec![0x04, 0x20];
        point.extend_from_slice(public);
        let mut public = signing_public_template(&label);
        public.extend([
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(cryptoki::object::KeyType::EC_EDWARDS),
            Attribute::EcPoint(point),
        ]);
        self.handles.forget(&label);
        self.make(move |s, _| {
            // Half of a pair an earlier try left (it stopped between the two objects).
            Self::remove_labelled(s, &PAIR, &label)?;
            s.create_object(&private)?;
            s.create_object(&public).map(|_| ())
        })
    }

    /// An Ed25519 signature (RFC 8032, pure) of `message` by the `purpose` key in the token.
    pub fn sign(&self, purpose: &str, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let label = self.signing_label(purpose);
        let message = message.to_vec();
        let handles = self.handles.clone();
        self.with_session(Op::Sign, move |s| {
            handles.use_key(s, ObjectClass::PRIVATE_KEY, &label, |key| {
                let scheme = cryptoki::mechanism::eddsa::EddsaParams::new(
                    cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
                );
                s.sign(&Mechanism::Eddsa(scheme), key, &message)
            })
        })
    }
}

/// The two halves of a signing key pair.
const PAIR: [ObjectClass; 2] = [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY];

/// The `CKA_EC_POINT` among `attrs`.
fn ec_point(attrs: Vec<Attribute>) -> Option<Vec<u8>> {
    attrs.into_iter().find_map(|a| match a {
        Attribute::EcPoint(p) => Some(p),
        _ => None,
    })
}

/// An Ed25519 public key from its `CKA_EC_POINT`: a DER OCTET STRING, or the bare point as some
/// tokens give it.
fn ed25519_point(purpose: &str, point: &[u8]) -> Result<[u8; 32], HsmError> {
    let raw = point
        .strip_prefix(&[0x04, 0x20])
        .filter(|rest| rest.len() == 32)
        .unwrap_or(point);
    raw.try_into().map_err(|_| {
        HsmError::Unavailable(format!(
            "the token's {purpose} public key is not an Ed25519 point"
        ))
    })
}

/// The blind-index key: an HMAC-SHA-256 key labelled `{prefix}-blind-index-hmac`, sensitive,
/// never extractable, for `CKM_SHA256_HMAC` signatures only. Whoever holds the database and this
/// key can try every one of the 10^12 national ID numbers against the index; in the token, only
/// the token can.
impl Hsm {
    fn index_label(&self) -> Vec<u8> {
        format!("{}-blind-index-hmac", self.prefix).into_bytes()
    }

    fn index_template(label: &[u8]) -> Vec<Attribute> {
        let mut template = sealed(label, MechanismType::SHA256_HMAC);
        template.extend([
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(cryptoki::object::KeyType::GENERIC_SECRET),
            Attribute::Sign(true),
            Attribute::Verify(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
        ]);
        template
    }

    /// Whether the token holds this vault's blind-index key.
    pub fn has_index_key(&self) -> Result<bool, HsmError> {
        let label = self.index_label();
        self.with_session(Op::Keys, move |s| {
            Ok(Self::find_one(s, ObjectClass::SECRET_KEY, &label)?.is_some())
        })
    }

    /// Generates the blind-index key inside the token (a new vault), 32 bytes.
    pub fn generate_index_key(&self) -> Result<(), HsmError> {
        let label = self.index_label();
        let mut template = Self::index_template(&label);
        template.push(Attribute::ValueLen(32.into()));
        self.make(move |s, again| {
            if again {
                Self::remove_labelled(s, &[ObjectClass::SECRET_KEY], &label)?;
            }
            s.generate_key(&Mechanism::GenericSecretKeyGen, &template)
                .map(|_| ())
        })
    }

    /// Puts the blind-index key a file held into the token (`hoso keys migrate`): the same
    /// key, so every index already stored still matches.
    pub fn import_index_key(&self, value: &[u8; 32]) -> Result<(), HsmError> {
        let label = self.index_label();
        let mut template = Self::index_template(&label);
        template.push(Attribute::Value(value.to_vec()));
        self.make(move |s, again| {
            if again {
                Self::remove_labelled(s, &[ObjectClass::SECRET_KEY], &label)?;
            }
            s.create_object(&template).map(|_| ())
        })
    }

    /// HMAC-SHA-256 of `message` under the blind-index key, inside the token.
    pub fn index_hmac(&self, message: &[u8]) -> Result<[u8; 32], HsmError> {
        let label = self.index_label();
        let message = message.to_vec();
        let handles = self.handles.clone();
        let mac = self.with_session(Op::Index, move |s| {
            handles.use_key(s, ObjectClass::SECRET_KEY, &label, |key| {
                s.sign(&Mechanism::Sha256Hmac, key, &message)
            })
        })?;
        mac.try_into()
            .map_err(|_| HsmError::Unavailable("the token's HMAC is not 32 bytes".into()))
    }
}

/// What every secret the vault keeps in the token is: a token object, private, sensitive,
/// never extractable, neither copyable nor modifiable, usable to derive nothing, and with the
/// one mechanism it is for.
fn sealed(label: &[u8], mechanism: MechanismType) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label.to_vec()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::Derive(false),
        Attribute::AllowedMechanisms(vec![mechanism]),
    ]
}

/// The public half of a signing key: private too (only a session with the PIN sees it, so no
/// one without it can find the vault's labels) and not modifiable (its point is what every
/// signature is checked against).
fn signing_public_template(label: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Modifiable(false),
        Attribute::Label(label.to_vec()),
        Attribute::EcParams(ED25519_PARAMS.to_vec()),
        Attribute::Verify(true),
    ]
}

/// The private half of a signing key: sealed, for EdDSA signatures only.
fn signing_private_template(label: &[u8]) -> Vec<Attribute> {
    let mut template = sealed(label, MechanismType::EDDSA);
    template.push(Attribute::Sign(true));
    template
}

/// The vault's own label prefix, `hoso-` and 16 random hex digits, made once (by `serve` or
/// `init`) and kept in `keys/pkcs11-label-prefix`.
fn own_prefix(keys_dir: &Path, create: bool) -> Result<String, HsmError> {
    let path = keys_dir.join("pkcs11-label-prefix");
    if !path.exists() && create {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let name = format!("hoso-{}", hex::encode(super::random_bytes::<8>()));
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(keys_dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
            })
            .and_then(|mut f| f.write_all(name.as_bytes()).and_then(|()| f.sync_all()));
        if let Err(e) = made
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(HsmError::Setting(format!("{}: {e}", path.display())));
        }
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        HsmError::Setting(format!(
            "{}: {e} (the vault's key label prefix; `hoso serve` or `hoso init` makes it)",
            path.display()
        ))
    })?;
    Ok(text.trim().to_owned())
}

/// The modules this process loaded, by path.
static LOADED: Mutex<Vec<(std::path::PathBuf, Arc<Module>)>> = Mutex::new(Vec::new());

/// Finalises every module this process loaded, when it is done with them, just before it exits.
/// SoftHSM2 left initialised frees its state in its static destructors as the process exits,
/// and that teardown now and then aborts ("double free or corruption"): a command that did its
/// work then exits 134. A call still in a module (stuck) is waited for a second, then that
/// module is left as it is. Sessions open until now are gone with the finalisation: they are
/// forgotten, never closed again (the generation moves on), and a later call would initialise
/// the module again.
pub fn finalize_all() {
    let Ok(loaded) = LOADED.lock() else {
        return;
    };
    for (_, module) in loaded.iter() {
        if let Some(_alone) = module.calls.try_write_for(Duration::from_secs(1)) {
            let _ = module.ctx.clone().finalize();
            module.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The process's one context for `module`: loaded and `C_Initialize`d the first time, then
/// kept for the life of the process. A module unloaded and loaded again (a context dropped,
/// another made) would have to be initialised again, which not every module survives.
fn context(module: &Path) -> Result<Arc<Module>, HsmError> {
    let mut loaded = LOADED
        .lock()
        .map_err(|_| HsmError::Unavailable("the PKCS#11 module's lock was poisoned".into()))?;
    if let Some((_, m)) = loaded.iter().find(|(path, _)| path == module) {
        return Ok(m.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| {
        HsmError::Setting(format!(
            "HOSO_PKCS11_MODULE {}: cannot be loaded as a PKCS#11 module ({e})",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(HsmError::Setting(format!(
                "the PKCS#11 module did not initialise: {e}"
            )));
        }
    }
    let m = Arc::new(Module {
        ctx,
        calls: parking_lot::RwLock::new(()),
        generation: AtomicU64::new(0),
        last_restart: Mutex::new(None),
    });
    loaded.push((module.to_owned(), m.clone()));
    Ok(m)
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| HsmError::Setting(format!("the PKCS#11 module lists no tokens: {e}")))?;
    slots
        .into_iter()
        .find(|slot| ctx.get_token_info(*slot).is_ok_and(|t| t.label() == label))
        .ok_or_else(|| {
            HsmError::Setting(format!(
                "HOSO_PKCS11_TOKEN_LABEL {label:?}: no token with this label in the module"
            ))
        })
}

/// Finds the token and logs in once, so that a wrong label or PIN stops start-up rather than
/// the first intake; gives the slot and the module generation it was found in. A module that
/// keeps its token in files shared between processes (SoftHSM2) rewrites them at every
/// process's login, and one that read them in the middle of that holds a token that is missing,
/// or fails the login, until it reads them again: such a failure is tried again three times, a
/// second apart (the least time between two initialisations), each after the module is
/// initialised again. A refused PIN is never tried again (retries would lock it).
fn log_in(
    module: &Module,
    s: &HsmSettings,
    pin: &AuthPin,
) -> Result<(Slot, u64, Session), HsmError> {
    let mut tries = 0;
    loop {
        let (result, generation) = {
            let _shared = module.calls.read();
            let generation = module.generation();
            (log_in_once(module, s, pin), generation)
        };
        match result {
            Ok((slot, session)) => return Ok((slot, generation, session)),
            Err(LogIn::Passing(_)) if tries < 3 => {
                std::thread::sleep(Duration::from_secs(1));
                module.restart(generation, "its token could not be read at start-up");
                tries += 1;
            }
            Err(LogIn::Passing(e) | LogIn::Final(e)) => return Err(e),
        }
    }
}

/// Why a log-in failed: the token's answer may change in a moment, or it will not.
enum LogIn {
    Passing(HsmError),
    Final(HsmError),
}

fn log_in_once(module: &Module, s: &HsmSettings, pin: &AuthPin) -> Result<(Slot, Session), LogIn> {
    let slot = find_slot(&module.ctx, &s.token_label).map_err(LogIn::Passing)?;
    let session = module
        .ctx
        .open_rw_session(slot)
        .map_err(|e| LogIn::Passing(unavailable(e)))?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok((slot, session)),
        Err(Error::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange | RvError::PinLocked,
            _,
        )) => Err(LogIn::Final(HsmError::Setting(format!(
            "HOSO_PKCS11_PIN_FILE {}: the token refused this PIN",
            s.pin_file.display()
        )))),
        Err(e) => Err(LogIn::Passing(unavailable(e))),
    }
}

/// The PIN, read once from its file (trailing newline dropped), kept as a secret.
fn read_pin(path: &Path) -> Result<AuthPin, HsmError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        HsmError::Setting(format!(
            "HOSO_PKCS11_PIN_FILE {}: cannot be read ({e})",
            path.display()
        ))
    })?;
    let pin = text.trim_end_matches(['\n', '\r']);
    if pin.is_empty() {
        return Err(HsmError::Setting(format!(
            "HOSO_PKCS11_PIN_FILE {} is empty",
            path.display()
        )));
    }
    Ok(AuthPin::new(pin.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ed25519_point_is_read_wrapped_in_an_octet_string_or_bare() {
        let key = [0x04u8; 32];
        let mut wrapped = vec![0x04, 0x20];
        wrapped.extend_from_slice(&key);
        assert_eq!(ed25519_point("audit", &wrapped).unwrap(), key);
        // Bare, and starting with the octet string's own two bytes.
        assert_eq!(ed25519_point("audit", &key).unwrap(), key);
        assert!(ed25519_point("audit", &wrapped[..33]).is_err());
        assert!(ed25519_point("audit", &[0x04, 0x20, 1]).is_err());
    }

    #[test]
    fn a_call_that_does_not_return_fails_after_the_timeout_and_then_at_once() {
        let workers = Workers::<()>::start(2, Duration::from_millis(200), None);
        let answered = workers.call(|_, _| Ok(7));
        assert_eq!(answered.unwrap(), 7);
        // Both workers stuck inside a call, as in a module that stopped answering.
        for _ in 0..2 {
            let started = Instant::now();
            let stuck = workers.call(|_, _| {
                std::thread::sleep(Duration::from_secs(3));
                Ok(())
            });
            assert!(
                matches!(stuck, Err(HsmError::Unavailable(ref w)) if w.starts_with(NOT_ANSWERING))
            );
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        std::thread::sleep(Duration::from_millis(250));
        assert!(workers.all_stuck());
        let started = Instant::now();
        let refused = workers.call(|_, _| Ok(1));
        assert!(refused.is_err());
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "not at once"
        );
        // The calls return: the workers answer again.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(workers.call(|_, _| Ok(8)).unwrap(), 8);
    }
}
