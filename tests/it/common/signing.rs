//! OpenPGP fixtures made by GnuPG (an independent implementation) with faked clocks: a
//! trusted key whose signing subkeys expire or are revoked at known times, signatures made
//! before and after those times, and an unrelated key. Made once per test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// 2023-11-14T22:13:20Z: when the test keys were "created".
pub const T: u64 = 1_700_000_000;
/// When two of the subkeys are revoked.
pub const R: u64 = T + 7200;

pub struct Fixtures {
    pub dir: PathBuf,
    /// A 3 MiB artifact with deterministic contents.
    pub artifact: PathBuf,
    /// The trusted key, armored.
    pub keyring: PathBuf,
    /// An unrelated key, armored.
    pub other_keyring: PathBuf,
    pub primary: String,
    pub good_subkey: String,
    gnupg_home: PathBuf,
    lock: Mutex<()>,
}

const SCRIPT: &str = r#"
set -euo pipefail
cd "$FIXTURES"
export GNUPGHOME="$FIXTURES/gnupg"
mkdir -p -m 700 "$GNUPGHOME"
G() { gpg --batch --yes --quiet --pinentry-mode loopback --passphrase '' --faked-system-time "$1!" "${@:2}" 2>/dev/null; }
sub() { gpg --with-colons --list-options show-unusable-subkeys --list-keys "$1" | awk -F: -v n="$2" '/^sub/{c++} /^fpr/ && c==n {print $10; exit}'; }
G $T --quick-gen-key 'Kato Test Signer <signer@kato.test>' ed25519 cert never
A=$(gpg --with-colons --list-keys signer@kato.test | awk -F: '/^fpr/{print $10; exit}')
G $T --quick-add-key "$A" ed25519 sign never
G $((T+60)) --quick-add-key "$A" ed25519 sign never
G $((T+90)) --quick-add-key "$A" ed25519 sign never
G $((T+120)) --quick-add-key "$A" ed25519 sign never
GOOD=$(sub "$A" 1); SOFT=$(sub "$A" 2); HARD=$(sub "$A" 3); EXP=$(sub "$A" 4)
G $T --quick-gen-key 'Kato Other Signer <other@kato.test>' ed25519 sign never
B=$(gpg --with-colons --list-keys other@kato.test | awk -F: '/^fpr/{print $10; exit}')
s() { G "$1" -u "$2!" -o "$3" --detach-sign artifact.bin; }
s $((T+3600)) "$GOOD" good.sig
s $((T+3600)) "$EXP" exp-before.sig
s $((T+90000)) "$EXP" exp-after.sig
s $((R-3600)) "$SOFT" soft-before.sig
s $((R+3600)) "$SOFT" soft-after.sig
s $((R-3600)) "$HARD" hard-before.sig
s $((T+3600)) "$B" wrong.sig
# Only now limit the subkeys: gpg will not sign with an expired or revoked key.
G $((T+180)) --quick-set-expire "$A" 1d "$EXP"
printf 'key %s\nrevkey\ny\n2\nsuperseded\n\ny\nsave\n' "$SOFT" | G $R --command-fd 0 --edit-key "$A" >/dev/null
printf 'key %s\nrevkey\ny\n1\ncompromised\n\ny\nsave\n' "$HARD" | G $R --command-fd 0 --edit-key "$A" >/dev/null
gpg --armor --export "$A" > keyring.asc
gpg --armor --export "$B" > other.asc
echo "$A $GOOD"
"#;

pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("kato-pgp-")
            .tempdir()
            .unwrap()
            .keep();
        let artifact = dir.join("artifact.bin");
        std::fs::write(&artifact, pseudo_random(3 << 20, 7)).unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg(SCRIPT)
            .env("FIXTURES", &dir)
            .env("T", T.to_string())
            .env("R", R.to_string())
            .output()
            .expect("bash and gpg (.ci/run installs gnupg)");
        assert!(
            out.status.success(),
            "gpg fixtures: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids = String::from_utf8(out.stdout).unwrap();
        let mut ids = ids.split_whitespace();
        Fixtures {
            primary: ids.next().unwrap().to_string(),
            good_subkey: ids.next().unwrap().to_string(),
            keyring: dir.join("keyring.asc"),
            other_keyring: dir.join("other.asc"),
            gnupg_home: dir.join("gnupg"),
            artifact,
            dir,
            lock: Mutex::new(()),
        }
    })
}

impl Fixtures {
    /// A signature made earlier over `artifact.bin`: good, exp-before, exp-after, soft-before,
    /// soft-after, hard-before or wrong.
    pub fn signature(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(format!("{name}.sig"))).unwrap()
    }

    fn gpg(&self, args: &[&str], input: Option<&Path>) -> Vec<u8> {
        let _serial = self.lock.lock().unwrap();
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", &self.gnupg_home)
            .args([
                "--batch",
                "--yes",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(["--faked-system-time", &format!("{}!", T + 3600)])
            .args(["-u", &format!("{}!", self.good_subkey)])
            .args(args);
        if let Some(path) = input {
            cmd.arg(path);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A binary detached signature over `file` by the good subkey.
    pub fn sign(&self, file: &Path) -> Vec<u8> {
        self.gpg(&["--detach-sign", "-o", "-"], Some(file))
    }

    /// `text` clear-signed by the good subkey.
    pub fn clearsign(&self, text: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text");
        std::fs::write(&path, text).unwrap();
        self.gpg(&["--clearsign", "-o", "-"], Some(&path))
    }
}

/// Deterministic bytes (xorshift), so fixtures are the same on every run.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
