//! A witness: someone the vault's operators do not control keeps the latest checkpoint it has
//! seen and accepts a new one only with a consistency proof from it. A rolled-back, rewritten
//! or forked log cannot show a witness a consistent story, whatever the database says.
//!
//! State (a directory the witness owns): `key`, the log's verifier key, pinned on first use;
//! `checkpoint`, the last signed checkpoint accepted, replaced atomically.

use std::path::Path;

use super::merkle::{self, Hash};
use super::note::{self, Checkpoint};

/// What a witness holds.
pub struct State {
    pub key: String,
    pub checkpoint: Option<(String, Checkpoint)>,
}

impl State {
    /// Reads the state; `None` when the directory holds none yet.
    pub fn load(dir: &Path) -> Result<Option<State>, String> {
        let key = match std::fs::read_to_string(dir.join("key")) {
            Ok(k) => k.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.join("key").display())),
        };
        let (name, public) = note::parse_verifier_key(&key)?;
        let checkpoint = match std::fs::read_to_string(dir.join("checkpoint")) {
            Ok(text) => {
                let c = note::open(&text, &name, &public).map_err(|e| {
                    format!(
                        "the witness's own checkpoint does not verify ({e}); its state was altered"
                    )
                })?;
                Some((text, c))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read the witness checkpoint: {e}")),
        };
        Ok(Some(State { key, checkpoint }))
    }

    /// Keeps `note` as the latest checkpoint (written to a temporary file, synced, renamed).
    pub fn save(dir: &Path, key: &str, note: &str) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, text) in [("key", format!("{key}\n")), ("checkpoint", note.to_owned())] {
            let tmp = dir.join(format!(".{name}.tmp"));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, dir.join(name))?;
                std::fs::File::open(dir)?.sync_all()
            };
            write()
                .map_err(|e| format!("cannot save the witness state in {}: {e}", dir.display()))?;
        }
        Ok(())
    }
}

/// Decides whether `new` may follow `held`, given a consistency proof between them. Every
/// refusal says what the log did.
pub fn check(held: Option<&Checkpoint>, new: &Checkpoint, proof: &[Hash]) -> Result<(), String> {
    let Some(held) = held else {
        return Ok(());
    };
    if new.size < held.size {
        return Err(format!(
            "the log shrank: this witness saw {} entries, the vault now signs {}",
            held.size, new.size
        ));
    }
    if new.size == held.size {
        return if new.root == held.root {
            Ok(())
        } else {
            Err(format!(
                "two different logs of {} entries were signed: the log was rewritten (fork)",
                new.size
            ))
        };
    }
    if !merkle::verify_consistency(held.size, new.size, &held.root, &new.root, proof) {
        return Err(format!(
            "the log of {} entries does not extend the {} this witness saw: entries were \
             rewritten or removed",
            new.size, held.size
        ));
    }
    Ok(())
}
