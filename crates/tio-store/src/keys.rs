//! The key ring: versioned key-encryption keys (KEKs) that wrap each child's data key,
//! and the separate key of the keyed blind indexes.
//!
//! The ring is a small text file (or the `TIO_KEYS` environment variable holding the
//! same text). In production it lives outside the data directory: a copy of the data
//! directory (a backup, a disk sent for repair) must not carry the means to read it.
//! In development mode it lives inside, for convenience.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::secret_file::{SecretFileError, read_secret_file, write_new_file};

/// The first line of a key ring file. Do not change: it marks the format.
const HEADER: &str = "tio-keys 1";

/// Bytes of every key (KEK, data key, index key).
pub const KEY_BYTES: usize = 32;

/// Bytes of an XChaCha20-Poly1305 nonce. Do not change: it is part of stored records.
pub const NONCE_BYTES: usize = 24;

/// The format byte of a wrapped data key. Do not change: it is stored.
const WRAPPED_FORMAT: u8 = 1;

/// 256 bits of key material, zeroized when dropped and never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_BYTES]>);

impl SecretKey {
    /// Returns a new random key from the operating system's generator.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(bytes.as_mut()).map_err(|err| KeyError::Random(err.to_string()))?;
        Ok(SecretKey(bytes))
    }

    /// Returns a key made of `bytes` (which must be [`KEY_BYTES`] long), or `None`.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<SecretKey> {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        key.copy_from_slice(bytes.get(..KEY_BYTES).filter(|_| bytes.len() == KEY_BYTES)?);
        Some(SecretKey(key))
    }

    /// Returns the key bytes.
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    fn from_hex(text: &str) -> Option<SecretKey> {
        if text.len() != KEY_BYTES * 2 {
            return None;
        }
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
        }
        Some(SecretKey(bytes))
    }

    fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.iter().map(|byte| format!("{byte:02x}")).collect())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Why keys could not be loaded, generated or used. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file is unsafe or unreadable.
    #[error(transparent)]
    File(#[from] SecretFileError),
    /// The key ring text is malformed.
    #[error("key ring line {line}: {reason}")]
    Format {
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The operating system's random generator failed.
    #[error("random generator failed: {0}")]
    Random(String),
    /// A wrapped key names a KEK version the ring does not hold.
    #[error("key-encryption key version {0} is not in the key ring")]
    UnknownVersion(u32),
    /// A wrapped key or sealed value failed authentication: damaged, tampered with,
    /// moved to another record, or wrapped by another ring.
    #[error("authentication failed: data damaged, moved or under another key")]
    Authentication,
    /// A requested change to the ring is not allowed.
    #[error("{0}")]
    Refused(String),
}

/// Every key the store uses.
#[derive(Clone)]
pub struct KeyRing {
    keks: BTreeMap<u32, SecretKey>,
    current: u32,
    index_key: SecretKey,
    /// The audit log's checkpoint signing key, in its own text form (the signed-note
    /// `PRIVATE+KEY+...` encoding). Kept here so that it is created and stored like the
    /// other keys; the ring does not interpret it.
    audit_signing_key: Option<Zeroizing<String>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("kek_versions", &self.versions()).field("current", &self.current).finish()
    }
}

impl KeyRing {
    /// Returns a new ring: KEK version 1 and a fresh index key.
    pub fn generate() -> Result<KeyRing, KeyError> {
        Ok(KeyRing {
            keks: BTreeMap::from([(1, SecretKey::generate()?)]),
            current: 1,
            index_key: SecretKey::generate()?,
            audit_signing_key: None,
        })
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<KeyRing, KeyError> {
        let fail = |line: usize, reason: &str| KeyError::Format { line, reason: reason.to_owned() };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
        match lines.next() {
            Some((_, line)) if line == HEADER => {}
            Some((number, _)) => return Err(fail(number, "expected the header `tio-keys 1`")),
            None => return Err(fail(1, "empty key ring")),
        }
        let mut keks = BTreeMap::new();
        let mut current = None;
        let mut index_key = None;
        let mut audit_signing_key = None;
        for (number, line) in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["kek", version, hex] => {
                    let version: u32 = version
                        .parse()
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| fail(number, "KEK version must be a positive integer"))?;
                    let key = SecretKey::from_hex(hex).ok_or_else(|| fail(number, "KEK must be 64 hex digits"))?;
                    if keks.insert(version, key).is_some() {
                        return Err(fail(number, "duplicate KEK version"));
                    }
                }
                ["current-kek", version] => {
                    current =
                        Some(version.parse::<u32>().map_err(|_| fail(number, "current-kek must be a version number"))?);
                }
                ["audit-signing-key", key] => {
                    if !key.starts_with("PRIVATE+KEY+") {
                        return Err(fail(number, "audit-signing-key must be a PRIVATE+KEY+... signing key"));
                    }
                    audit_signing_key = Some(Zeroizing::new((*key).to_owned()));
                }
                ["index-key", hex] => {
                    index_key =
                        Some(SecretKey::from_hex(hex).ok_or_else(|| fail(number, "index-key must be 64 hex digits"))?);
                }
                _ => return Err(fail(number, "expected `kek VERSION HEX`, `current-kek VERSION` or `index-key HEX`")),
            }
        }
        let current = current.ok_or_else(|| fail(0, "no current-kek line"))?;
        if !keks.contains_key(&current) {
            return Err(fail(0, "current-kek names a version that is not in the ring"));
        }
        let index_key = index_key.ok_or_else(|| fail(0, "no index-key line"))?;
        Ok(KeyRing { keks, current, index_key, audit_signing_key })
    }

    /// Returns the text form. Handle it as the keys themselves.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        text.push_str("# Tell It Once key ring. Keep it outside the data directory, mode 0600, and back it\n");
        text.push_str("# up separately: without it no stored record can be read; with it and the data, all can.\n");
        text.push_str(HEADER);
        text.push('\n');
        for (version, key) in &self.keks {
            text.push_str(&format!("kek {version} {}\n", key.to_hex().as_str()));
        }
        text.push_str(&format!("current-kek {}\n", self.current));
        text.push_str(&format!("index-key {}\n", self.index_key.to_hex().as_str()));
        if let Some(key) = &self.audit_signing_key {
            text.push_str(&format!("audit-signing-key {}\n", key.as_str()));
        }
        text
    }

    /// Loads a key ring file, refusing it if group or others can read it.
    pub fn load_file(path: &Path) -> Result<KeyRing, KeyError> {
        let mut bytes = read_secret_file(path)?;
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| KeyError::Format { line: 0, reason: "not UTF-8".to_owned() })
            .and_then(KeyRing::parse);
        bytes.zeroize();
        parsed
    }

    /// Writes a new key ring file with mode 0600, refusing to replace one.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        Ok(write_new_file(path, self.to_text().as_bytes(), 0o600)?)
    }

    /// Replaces a key ring file atomically: writes a new file (mode 0600) beside it,
    /// syncs it, renames it over the old one and syncs the directory, so that a crash
    /// leaves either the old ring or the new one, never a mix.
    pub fn replace_file(&self, path: &Path) -> Result<(), KeyError> {
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let temporary =
            dir.join(format!(".{}.new", path.file_name().and_then(|name| name.to_str()).unwrap_or("tio.keys")));
        // A leftover from an interrupted replace holds a ring that was never in use.
        let _ = std::fs::remove_file(&temporary);
        write_new_file(&temporary, self.to_text().as_bytes(), 0o600)?;
        let io = |source| KeyError::File(SecretFileError::Write { path: path.to_owned(), source });
        std::fs::rename(&temporary, path).map_err(io)?;
        std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)
    }

    /// Returns the audit log's signing key text, if the ring holds one.
    pub fn audit_signing_key(&self) -> Option<&str> {
        self.audit_signing_key.as_ref().map(|key| key.as_str())
    }

    /// Sets the audit log's signing key text (`PRIVATE+KEY+...`).
    pub fn set_audit_signing_key(&mut self, key: Zeroizing<String>) {
        self.audit_signing_key = Some(key);
    }

    /// Returns the KEK versions held, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.keks.keys().copied().collect()
    }

    /// Returns the version new data keys are wrapped under.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Adds a new KEK version and makes it current; returns it.
    pub fn add_version(&mut self) -> Result<u32, KeyError> {
        let version = self.keks.keys().next_back().copied().unwrap_or(0) + 1;
        self.keks.insert(version, SecretKey::generate()?);
        self.current = version;
        Ok(version)
    }

    /// Removes a KEK version that is not current. The caller must first have re-wrapped
    /// every data key under another version.
    pub fn retire(&mut self, version: u32) -> Result<(), KeyError> {
        if version == self.current {
            return Err(KeyError::Refused(format!("version {version} is current; rotate before retiring it")));
        }
        self.keks.remove(&version).map(|_| ()).ok_or(KeyError::UnknownVersion(version))
    }

    /// Returns the keyed blind index of `value` under a domain `label`, so that equal
    /// values can be found without storing them and different kinds never collide.
    pub fn blind_index(&self, label: &str, value: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.index_key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// Wraps a data key under the current KEK, bound to `context` (the child's index).
    pub fn wrap(&self, data_key: &SecretKey, context: &[u8]) -> Result<Vec<u8>, KeyError> {
        let kek = self.keks.get(&self.current).ok_or(KeyError::UnknownVersion(self.current))?;
        let mut wrapped = vec![WRAPPED_FORMAT];
        wrapped.extend_from_slice(&self.current.to_be_bytes());
        let associated = wrap_associated_data(self.current, context);
        wrapped.extend_from_slice(&seal_with(kek, &associated, data_key.expose())?);
        Ok(wrapped)
    }

    /// Unwraps a data key wrapped by [`KeyRing::wrap`] under any version the ring holds.
    pub fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<SecretKey, KeyError> {
        let (format, rest) = wrapped.split_first().ok_or(KeyError::Authentication)?;
        if *format != WRAPPED_FORMAT || rest.len() < 4 {
            return Err(KeyError::Authentication);
        }
        let version = u32::from_be_bytes(rest[..4].try_into().map_err(|_| KeyError::Authentication)?);
        let kek = self.keks.get(&version).ok_or(KeyError::UnknownVersion(version))?;
        let plain = Zeroizing::new(open_with(kek, &wrap_associated_data(version, context), &rest[4..])?);
        let bytes: [u8; KEY_BYTES] = plain.as_slice().try_into().map_err(|_| KeyError::Authentication)?;
        Ok(SecretKey(Zeroizing::new(bytes)))
    }

    /// Returns every key in the ring as raw key material, for tests that prove a value
    /// cannot be opened with any key the store holds.
    #[cfg(test)]
    pub(crate) fn all_keys(&self) -> Vec<SecretKey> {
        self.keks.values().cloned().chain(std::iter::once(self.index_key.clone())).collect()
    }

    /// Returns the KEK version a wrapped key was wrapped under.
    pub fn wrapped_version(wrapped: &[u8]) -> Option<u32> {
        wrapped.get(1..5).and_then(|bytes| bytes.try_into().ok()).map(u32::from_be_bytes)
    }
}

fn wrap_associated_data(version: u32, context: &[u8]) -> Vec<u8> {
    let mut associated = b"tio/child-key/1/".to_vec();
    associated.extend_from_slice(&version.to_be_bytes());
    associated.extend_from_slice(context);
    associated
}

/// Seals `plaintext` under `key`: a random nonce, then the ciphertext and tag.
pub fn seal_with(key: &SecretKey, associated: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let mut nonce_bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce_bytes).map_err(|err| KeyError::Random(err.to_string()))?;
    let nonce = XNonce::from(nonce_bytes);
    let ciphertext =
        cipher.encrypt(&nonce, Payload { msg: plaintext, aad: associated }).map_err(|_| KeyError::Authentication)?;
    let mut sealed = nonce_bytes.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// Opens what [`seal_with`] sealed, failing on any change to it or its associated data.
pub fn open_with(key: &SecretKey, associated: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < NONCE_BYTES {
        return Err(KeyError::Authentication);
    }
    let (nonce_bytes, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce_array: [u8; NONCE_BYTES] = nonce_bytes.try_into().map_err(|_| KeyError::Authentication)?;
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    cipher
        .decrypt(&XNonce::from(nonce_array), Payload { msg: ciphertext, aad: associated })
        .map_err(|_| KeyError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips_and_hides_nothing_it_should_keep() {
        let mut ring = KeyRing::generate().unwrap();
        ring.add_version().unwrap();
        ring.set_audit_signing_key(Zeroizing::new("PRIVATE+KEY+log+01020304+AQID".to_owned()));
        let parsed = KeyRing::parse(&ring.to_text()).unwrap();
        assert_eq!(parsed.audit_signing_key(), Some("PRIVATE+KEY+log+01020304+AQID"));
        assert_eq!(parsed.versions(), vec![1, 2]);
        assert_eq!(parsed.current_version(), 2);
        assert_eq!(parsed.blind_index("nhs", b"9990079196"), ring.blind_index("nhs", b"9990079196"));
        assert!(!format!("{ring:?}").contains(&ring.index_key.to_hex()[..16]), "Debug never shows keys");
    }

    #[test]
    fn malformed_rings_name_the_line() {
        for (text, line) in [
            ("nope\n", 1),
            ("tio-keys 1\nkek 1 zz\ncurrent-kek 1\n", 2),
            ("tio-keys 1\n\nkek 0 00\n", 3),
            ("tio-keys 1\nmystery line\n", 2),
        ] {
            match KeyRing::parse(text) {
                Err(KeyError::Format { line: found, .. }) => assert_eq!(found, line, "{text:?}"),
                other => panic!("expected a format error for {text:?}, got {other:?}"),
            }
        }
        let ring = KeyRing::generate().unwrap();
        let without_current: String =
            ring.to_text().lines().filter(|l| !l.starts_with("current-kek")).map(|l| format!("{l}\n")).collect();
        assert!(KeyRing::parse(&without_current).is_err());
    }

    #[test]
    fn blind_indexes_are_keyed_and_domain_separated() {
        let a = KeyRing::generate().unwrap();
        let b = KeyRing::generate().unwrap();
        assert_ne!(
            a.blind_index("nhs", b"9990079196"),
            b.blind_index("nhs", b"9990079196"),
            "another key, another index"
        );
        assert_ne!(a.blind_index("nhs", b"9990079196"), a.blind_index("upn", b"9990079196"), "labels separate kinds");
        assert_eq!(a.blind_index("nhs", b"9990079196"), a.blind_index("nhs", b"9990079196"));
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_context_and_survive_rotation_until_retired() {
        let mut ring = KeyRing::generate().unwrap();
        let data_key = SecretKey::generate().unwrap();
        let wrapped = ring.wrap(&data_key, b"child-a").unwrap();
        assert_eq!(ring.unwrap(&wrapped, b"child-a").unwrap().expose(), data_key.expose());
        assert!(matches!(ring.unwrap(&wrapped, b"child-b"), Err(KeyError::Authentication)), "moved to another child");

        let mut tampered = wrapped.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(ring.unwrap(&tampered, b"child-a"), Err(KeyError::Authentication)));

        ring.add_version().unwrap();
        assert_eq!(KeyRing::wrapped_version(&wrapped), Some(1));
        assert!(ring.unwrap(&wrapped, b"child-a").is_ok(), "old versions stay readable after rotation");
        let rewrapped = ring.wrap(&ring.unwrap(&wrapped, b"child-a").unwrap(), b"child-a").unwrap();
        assert_eq!(KeyRing::wrapped_version(&rewrapped), Some(2));
        ring.retire(1).unwrap();
        assert!(matches!(ring.unwrap(&wrapped, b"child-a"), Err(KeyError::UnknownVersion(1))));
        assert!(ring.unwrap(&rewrapped, b"child-a").is_ok());
        assert!(matches!(ring.retire(2), Err(KeyError::Refused(_))), "the current version cannot be retired");
    }

    #[test]
    fn key_files_are_written_0600_and_refused_when_open_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tio.keys");
        let ring = KeyRing::generate().unwrap();
        ring.write_new_file(&path).unwrap();
        assert_eq!(KeyRing::load_file(&path).unwrap().versions(), vec![1]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(KeyRing::load_file(&path), Err(KeyError::File(SecretFileError::TooOpen { .. }))));
    }
}
