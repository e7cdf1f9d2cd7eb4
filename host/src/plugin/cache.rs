//! The on-disk cache of compiled components.
//!
//! Compiling a large component with Cranelift takes seconds; loading its
//! serialized machine code takes milliseconds. An entry is keyed by the
//! SHA-256 of the `.wasm` file *and* the engine's precompile compatibility
//! hash (wasmtime version, target, engine settings), so a host with another
//! wasmtime or configuration never even looks at an entry it cannot use.
//!
//! `Component::deserialize` trusts its input (it maps machine code), so an
//! entry is only ever a file this host wrote, and it is checked before use:
//! a header with a magic string, the payload length and the payload's
//! SHA-256. A truncated or corrupted entry fails the check, is deleted and
//! the component is compiled again. Entries are written to a temporary file
//! and renamed into place, so a reader never sees a half-written entry.
//!
//! The checksum guards against accidents, not attackers: whoever can write
//! the directory can write a matching checksum, and so run native code in
//! the host. Hence the trust model (docs/security.md): the directory is the
//! host user's own. It is created private (mode 0700), and one owned by
//! another user or writable by group or others is refused (the host then
//! compiles without a cache); there is no fallback to a directory relative
//! to the working directory.

use std::{
    hash::{Hash, Hasher},
    io::Write,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, component::Component};

const MAGIC: &[u8; 8] = b"WSRCACH1";
const HEADER_LEN: usize = MAGIC.len() + 8 + 32;

/// A directory of compiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Hex of the engine's precompile compatibility hash.
    engine_key: String,
}

/// What a lookup found.
pub enum Lookup {
    Hit(Component),
    Miss,
    /// An entry existed but failed its checks (or wasmtime refused it); it
    /// was deleted. The reason is for the log.
    Invalid(String),
}

impl ArtifactCache {
    /// A cache in `dir` (created private if missing) for components
    /// compiled by `engine`; an error if the directory is not safe to trust.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        create_private(dir)?;
        check_private(dir)?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:x}", hasher.0.finalize())[..16].to_owned();
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for content `sha256`, if a valid entry exists.
    pub fn get(&self, engine: &Engine, sha256: &str) -> Lookup {
        let path = self.entry(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Invalid(format!("cannot read {}: {e}", path.display())),
        };
        let invalid = |why: String| {
            let _ = std::fs::remove_file(&path);
            Lookup::Invalid(format!("{}: {why}", path.display()))
        };
        let Some(payload) = check(&bytes) else {
            return invalid("corrupt entry (bad header, length or checksum)".to_owned());
        };
        // SAFETY: `payload` is exactly what `put` wrote from
        // `Component::serialize` for this engine configuration: the header's
        // SHA-256 over it matched, and the file lives in the host's own cache
        // directory. wasmtime additionally checks the engine version and
        // settings recorded in the artifact.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(component) => Lookup::Hit(component),
            Err(e) => invalid(format!("stale entry: {e}")),
        }
    }

    /// Store `component`, compiled from content `sha256`. Atomic: written
    /// to a temporary file in the same directory, then renamed.
    pub fn put(&self, sha256: &str, component: &Component) -> anyhow::Result<()> {
        let payload = component.serialize()?;
        let path = self.entry(sha256);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            rand::random::<u32>(),
            &sha256[..16.min(sha256.len())]
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&(payload.len() as u64).to_le_bytes())?;
            file.write_all(&Sha256::digest(&payload))?;
            file.write_all(&payload)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(result?)
    }
}

/// The payload of a well-formed entry.
fn check(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let len_bytes: [u8; 8] = bytes[MAGIC.len()..MAGIC.len() + 8].try_into().ok()?;
    let len = u64::from_le_bytes(len_bytes);
    let digest = &bytes[MAGIC.len() + 8..HEADER_LEN];
    let payload = &bytes[HEADER_LEN..];
    (payload.len() as u64 == len && Sha256::digest(payload).as_slice() == digest).then_some(payload)
}

/// Feeds `Hash` output into SHA-256: a hash that is stable across runs,
/// unlike `DefaultHasher`'s seeded or version-dependent output.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        // Never used: the digest is read with `finalize`.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/ws-router/components`,
/// else `$HOME/.cache/ws-router/components`; none without either (never a
/// path relative to the working directory, which may be anyone's).
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .filter(|base| base.is_absolute())?;
    Some(base.join("ws-router").join("components"))
}

/// Create `dir` (and missing parents) readable by its owner only.
fn create_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuse a directory that someone other than this user could write to.
#[cfg(unix)]
fn check_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)?;
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            why,
        ))
    };
    if !meta.is_dir() {
        return refuse(format!("{} is not a directory", dir.display()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return refuse(format!(
            "{} is owned by uid {}, not by this user (uid {me}); whoever owns it could run code in the host",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "{} is writable by group or others (mode {:o}); whoever can write it could run code in the host",
            dir.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn detects_truncation_and_corruption() {
        let payload = b"machine code".to_vec();
        let mut entry = super::MAGIC.to_vec();
        entry.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        entry.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&payload));
        entry.extend_from_slice(&payload);
        assert_eq!(check(&entry), Some(&payload[..]));
        assert_eq!(check(&entry[..entry.len() - 1]), None);
        let mut flipped = entry.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(check(&flipped), None);
        assert_eq!(check(b"WSRC"), None);
    }
}
