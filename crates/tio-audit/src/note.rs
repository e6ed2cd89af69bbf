//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys: the signature format of
//! audit checkpoints, and the verifier-key format auditors hold.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The signature type byte of Ed25519 in key encodings and key ids. Do not change.
const ED25519: u8 = 0x01;

/// The prefix of a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a key or note was refused. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty or contains white space or `+`.
    #[error("key name must be non-empty, without spaces or '+'")]
    Name,
    /// A key string is not in the expected format.
    #[error("malformed key")]
    Key,
    /// The note's text is empty, does not end in a newline, or has a control character.
    #[error("note text must be non-empty UTF-8 ending in a newline, without control characters")]
    Text,
    /// The note is not text, a blank line, and signature lines.
    #[error("malformed signed note")]
    Malformed,
    /// No signature by the expected key.
    #[error("no signature by {0}")]
    Unsigned(String),
    /// A signature by the expected key does not verify.
    #[error("signature by {0} does not verify")]
    BadSignature(String),
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
}

/// The 4-byte key id: SHA-256 of name, newline, type and public key.
fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::Name);
    }
    Ok(())
}

/// Splits `NAME+HASH+BASE64(0x01 || KEY)` into the name, the claimed id and the 32 key
/// bytes. The caller checks the id against the public key.
fn parse_key(text: &str) -> Result<(String, u32, Zeroizing<[u8; 32]>), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::Key);
    };
    check_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::Key);
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::Key)?;
    let bytes = Zeroizing::new(STANDARD.decode(key).map_err(|_| NoteError::Key)?);
    match bytes.split_first() {
        Some((&ED25519, key)) if key.len() == 32 => {
            let mut out = Zeroizing::new([0u8; 32]);
            out.copy_from_slice(key);
            Ok((name.to_owned(), id, out))
        }
        _ => Err(NoteError::Key),
    }
}

/// Checks that note text is well formed.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Text);
    }
    Ok(())
}

/// An Ed25519 note signer: the log's checkpoint key.
pub struct Signer {
    name: String,
    id: u32,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}+{:08x})", self.name, self.id)
    }
}

impl Signer {
    /// Generates a new key named `name` (by convention the log's origin).
    pub fn generate(name: &str) -> Result<Signer, NoteError> {
        check_name(name)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| NoteError::Random)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(Signer { id: key_id(name, &key.verifying_key().to_bytes()), name: name.to_owned(), key })
    }

    /// Parses `PRIVATE+KEY+NAME+HASH+BASE64(0x01 || seed)`.
    pub fn from_private_key(text: &str) -> Result<Signer, NoteError> {
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or(NoteError::Key)?;
        let (name, id, seed) = parse_key(rest)?;
        let key = SigningKey::from_bytes(&seed);
        if key_id(&name, &key.verifying_key().to_bytes()) != id {
            return Err(NoteError::Key);
        }
        Ok(Signer { id, name, key })
    }

    /// Returns the private key in its text form. Handle it as the key itself.
    pub fn private_key(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new(vec![ED25519]);
        bytes.extend_from_slice(self.key.as_bytes());
        Zeroizing::new(format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, STANDARD.encode(bytes.as_slice())))
    }

    /// Returns the matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Signs `text` and returns the signed note: the text, a blank line, one signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!("{text}\n{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(blob)))
    }
}

/// An Ed25519 note verifier, in the `NAME+HASH+BASE64` format auditors exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, STANDARD.encode(bytes))
    }
}

impl Verifier {
    /// Parses `NAME+HASH+BASE64(0x01 || public key)`, checking the hash.
    pub fn parse(text: &str) -> Result<Verifier, NoteError> {
        let text = text.trim();
        if text.starts_with("PRIVATE+") {
            return Err(NoteError::Key);
        }
        let (name, id, key) = parse_key(text)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| NoteError::Key)?;
        if key_id(&name, key.as_bytes()) != id {
            return Err(NoteError::Key);
        }
        Ok(Verifier { id, name, key })
    }

    /// Returns the key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the SHA-256 of the key as written (`NAME+HASH+BASE64`), lowercase hex,
    /// for comparing a key fetched from a server with one published out of band.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.to_string().as_bytes()))
    }

    /// Checks that `note` carries a valid signature by this key and returns its text.
    /// Signatures by other keys are ignored (a checkpoint may carry witnesses'); a
    /// signature that claims this key and fails is an error.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed)?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        check_text(text)?;
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(NoteError::Malformed);
        }
        let mut verified = false;
        for line in signatures.lines() {
            let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(NoteError::Malformed)?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed)?;
            let blob = STANDARD.decode(blob).map_err(|_| NoteError::Malformed)?;
            if blob.len() < 4 {
                return Err(NoteError::Malformed);
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || id != self.id {
                continue;
            }
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if verified { Ok(text) } else { Err(NoteError::Unsigned(self.name.clone())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference example of golang.org/x/mod/sumdb/note.
    const SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn the_reference_example_matches_byte_for_byte() {
        let signer = Signer::from_private_key(SKEY).unwrap();
        assert_eq!(signer.verifier().to_string(), VKEY);
        assert_eq!(signer.private_key().as_str(), SKEY);
        let note = signer.sign(TEXT).unwrap();
        assert_eq!(note, format!("{TEXT}\n{SIGNATURE}"));
        let verifier = Verifier::parse(VKEY).unwrap();
        assert_eq!(verifier.open(&note), Ok(TEXT));
    }

    #[test]
    fn mangled_verifier_keys_are_refused() {
        let bytes = VKEY.as_bytes();
        for index in 0..bytes.len() {
            let mut mangled = bytes.to_vec();
            mangled[index] = mangled[index].wrapping_add(1);
            if let Ok(text) = std::str::from_utf8(&mangled) {
                assert!(Verifier::parse(text).is_err(), "accepted {text}");
            }
        }
        for end in 1..bytes.len() {
            assert!(Verifier::parse(&VKEY[..end]).is_err(), "accepted a prefix of length {end}");
        }
        assert!(Verifier::parse(SKEY).is_err(), "a private key is not a verifier key");
    }

    #[test]
    fn altered_notes_and_other_keys_fail() {
        let signer = Signer::from_private_key(SKEY).unwrap();
        let verifier = signer.verifier();
        let note = signer.sign(TEXT).unwrap();
        let altered = note.replacen("cryptography", "cryptographY", 1);
        assert_eq!(verifier.open(&altered), Err(NoteError::BadSignature("PeterNeumann".into())));
        let other = Signer::generate("PeterNeumann").unwrap();
        assert_eq!(
            other.verifier().open(&note),
            Err(NoteError::Unsigned("PeterNeumann".into())),
            "same name, other key"
        );
        let witness = Signer::generate("witness.example").unwrap();
        let cosigned = format!("{}{}", note, witness.sign(TEXT).unwrap().rsplit("\n\n").next().unwrap());
        assert_eq!(verifier.open(&cosigned), Ok(TEXT), "other signers' lines are ignored");
        assert_eq!(verifier.open(TEXT), Err(NoteError::Malformed));
    }

    #[test]
    fn bad_text_and_names_are_refused() {
        let signer = Signer::generate("tio.example").unwrap();
        for text in ["", "no newline", "tab\tinside\n", "bell\u{7}\n"] {
            assert_eq!(signer.sign(text), Err(NoteError::Text), "{text:?}");
        }
        for name in ["", "has space", "a+b"] {
            assert_eq!(Signer::generate(name).unwrap_err(), NoteError::Name, "{name:?}");
        }
        assert!(format!("{signer:?}").starts_with("Signer(tio.example+"), "Debug shows no key material");
    }
}
