//! Hybrid end-to-end encryption, signatures and key fingerprints.
//!
//! Sealing runs on the client's main thread, opening on its reader thread,
//! both with no lock held; the server only parses public keys (on the
//! newcomer's handler thread) and never holds a private key.
//!
//! RSA can only encrypt a few hundred bytes, so a message is sealed the way
//! TLS and PGP do it:
//!
//! 1. a fresh random AES-256-GCM key encrypts the text (any length up to
//!    [`MAX_PLAINTEXT_BYTES`]), with the envelope's header as associated data;
//! 2. that key is wrapped with RSA-OAEP (SHA-256) under the recipient's
//!    public key, so only the recipient's private key can unwrap it;
//! 3. the sender signs everything (its name, the header, the wrapped key, the
//!    nonce and the ciphertext) with RSA-PSS (SHA-256), so the recipient knows
//!    who wrote it and that nobody, the server included, changed a byte.
//!
//! Runs on the client's threads only: the server never holds a private key,
//! never decrypts, and validates public keys only when a client joins.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::limits::{CLIENT_KEY_BITS, MAX_KEY_BITS, MAX_PLAINTEXT_BYTES, MIN_KEY_BITS};
use super::message::Envelope;

/// What can go wrong with keys, sealing and opening.
#[derive(Debug, Error)]
pub enum CryptoError {
    /// A public key that is not PEM SubjectPublicKeyInfo RSA.
    #[error("not an RSA public key in PEM SubjectPublicKeyInfo form")]
    NotAKey,
    /// An RSA key outside the accepted sizes.
    #[error("RSA key of {bits} bits is outside the accepted {MIN_KEY_BITS}-{MAX_KEY_BITS} bits")]
    KeySize {
        /// The key's modulus size.
        bits: usize,
    },
    /// Text over the size limit; nothing was sent.
    #[error("message of {size} bytes exceeds the limit of {MAX_PLAINTEXT_BYTES} bytes")]
    TooLong {
        /// The text's size in bytes.
        size: usize,
    },
    /// The signature does not match the sender's key: forged or altered.
    #[error("bad signature: the message was altered or not written by {0}")]
    BadSignature(String),
    /// The envelope verified but does not decrypt with our key.
    #[error("cannot decrypt")]
    Undecryptable,
    /// The decrypted text is not UTF-8.
    #[error("decrypted text is not UTF-8")]
    NotUtf8,
    /// Key generation, encryption or signing failed inside the RSA library.
    #[error("RSA operation failed: {0}")]
    Rsa(#[from] rsa::Error),
    /// The identity file could not be read or written.
    #[error("identity file {path}: {reason}")]
    IdentityFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// SHA-256 of a public key's SubjectPublicKeyInfo DER, shown as 16 groups of
/// 4 lowercase hex digits. `openssl pkey -pubin -outform DER | sha256sum`
/// prints the same digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The fingerprint of a PEM public key, without parsing the RSA key: the
    /// SHA-256 of the DER inside the armour. `None` if it is not PEM.
    pub fn of_pem(pem: &str) -> Option<Fingerprint> {
        use base64::Engine;
        let body = pem.trim().strip_prefix("-----BEGIN PUBLIC KEY-----")?.strip_suffix("-----END PUBLIC KEY-----")?;
        // Every client fingerprints every key it is sent: no allocation.
        // The buffers fit the base64 and DER of keys far above MAX_KEY_BITS;
        // anything larger is not a key this program accepts.
        let (mut text, mut der) = ([0u8; 4096], [0u8; 3072]);
        let mut len = 0;
        for byte in body.bytes().filter(|b| !b.is_ascii_whitespace()) {
            *text.get_mut(len)? = byte;
            len += 1;
        }
        let der_len = base64::engine::general_purpose::STANDARD.decode_slice(&text[..len], &mut der).ok()?;
        let der = &der[..der_len];
        Some(Fingerprint::of_der(der))
    }

    /// Parses the displayed form (16 groups of 4 hex digits).
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let groups: Vec<&str> = text.split(' ').collect();
        if groups.len() != 16 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, group) in groups.iter().enumerate() {
            if group.len() != 4 || !group.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            let value = u16::from_str_radix(group, 16).ok()?;
            bytes[2 * i..2 * i + 2].copy_from_slice(&value.to_be_bytes());
        }
        Some(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Someone else's public key, validated, with its fingerprint.
#[derive(Debug, Clone)]
pub struct PeerKey {
    key: PublicKey,
    fingerprint: Fingerprint,
}

impl PeerKey {
    /// Parses and validates a PEM SubjectPublicKeyInfo RSA key of
    /// [`MIN_KEY_BITS`] to [`MAX_KEY_BITS`] bits.
    pub fn from_pem(pem: &str) -> Result<PeerKey, CryptoError> {
        let key = PublicKey::from_public_key_pem(pem.trim()).map_err(|_| CryptoError::NotAKey)?;
        let bits = key.n().bit_width() as usize;
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(CryptoError::KeySize { bits });
        }
        let der = key.to_public_key_der().map_err(|_| CryptoError::NotAKey)?;
        Ok(PeerKey { fingerprint: Fingerprint::of_der(der.as_bytes()), key })
    }

    /// The key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The key in canonical PEM (LF line endings), whatever form it came in.
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        self.key.to_public_key_pem(LineEnding::LF).map_err(|_| CryptoError::NotAKey)
    }
}

/// Our own key pair: the private half never leaves this process.
pub struct Identity {
    key: PrivateKey,
    public: PeerKey,
    public_pem: String,
}

impl Identity {
    /// Generates a fresh [`CLIENT_KEY_BITS`]-bit key pair.
    pub fn generate() -> Result<Identity, CryptoError> {
        Identity::from_private(PrivateKey::new(&mut rand::rng(), CLIENT_KEY_BITS)?)
    }

    /// Loads the PKCS#8 PEM private key at `path`, or creates one there (mode
    /// 0600 on Unix) when the file does not exist. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Identity, bool), CryptoError> {
        let file_error = |reason: String| CryptoError::IdentityFile { path: path.display().to_string(), reason };
        match fs::read_to_string(path) {
            Ok(pem) => {
                let key = PrivateKey::from_pkcs8_pem(pem.trim())
                    .map_err(|_| file_error("not a PKCS#8 PEM RSA private key".into()))?;
                Ok((Identity::from_private(key)?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate()?;
                let pem = identity.key.to_pkcs8_pem(LineEnding::LF).map_err(|e| file_error(e.to_string()))?;
                write_private(path, pem.as_bytes()).map_err(|e| file_error(e.to_string()))?;
                Ok((identity, true))
            }
            Err(e) => Err(file_error(e.to_string())),
        }
    }

    fn from_private(key: PrivateKey) -> Result<Identity, CryptoError> {
        let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|_| CryptoError::NotAKey)?;
        let public = PeerKey::from_pem(&public_pem)?;
        Ok(Identity { key, public, public_pem })
    }

    /// Our public key, PEM SubjectPublicKeyInfo, as sent in the hello.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Our fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint
    }

    /// Seals `text` from `from` (our name) to `to`, whose key is `recipient`.
    pub fn seal(&self, from: &str, to: &str, recipient: &PeerKey, text: &str) -> Result<Envelope, CryptoError> {
        self.seal_at(from, to, recipient, text, now_millis())
    }

    /// [`Identity::seal`] with a given timestamp (milliseconds since the
    /// epoch): for tests of a recipient's freshness checks.
    pub fn seal_at(
        &self,
        from: &str,
        to: &str,
        recipient: &PeerKey,
        text: &str,
        sent_at: u64,
    ) -> Result<Envelope, CryptoError> {
        if text.len() > MAX_PLAINTEXT_BYTES {
            return Err(CryptoError::TooLong { size: text.len() });
        }
        let id_bytes: [u8; 16] = rand::random();
        let mut envelope = Envelope {
            id: id_bytes.iter().map(|b| format!("{b:02x}")).collect(),
            to: to.to_string(),
            sent_at,
            wrapped_key: Vec::new(),
            nonce: Vec::new(),
            ciphertext: Vec::new(),
            signature: Vec::new(),
        };
        let aes_key = Key::<Aes256Gcm>::generate();
        let nonce = Nonce::generate();
        let aad = associated_data(from, &envelope);
        envelope.ciphertext = Aes256Gcm::new(&aes_key)
            .encrypt(&nonce, Payload { msg: text.as_bytes(), aad: &aad })
            .map_err(|_| CryptoError::Undecryptable)?;
        envelope.nonce = nonce.to_vec();
        envelope.wrapped_key = recipient.key.oaep_encrypt::<Sha256>(aes_key.as_slice())?;
        envelope.signature = self.key.pss_sign::<Sha256>(&signed_bytes(from, &envelope))?;
        Ok(envelope)
    }

    /// Verifies that `envelope` was signed by `from`, whose key is `sender`,
    /// then decrypts it. The signature is checked first: nothing unverified
    /// is ever decrypted.
    pub fn open(&self, from: &str, sender: &PeerKey, envelope: &Envelope) -> Result<String, CryptoError> {
        Identity::verify(from, sender, envelope)?;
        self.decrypt(from, envelope)
    }

    /// The first half of [`Identity::open`]: checks that `sender` signed the
    /// envelope as `from` (everything in it, the ciphertext included). Cheap
    /// next to decrypting, so a recipient checks freshness between the two.
    pub fn verify(from: &str, sender: &PeerKey, envelope: &Envelope) -> Result<(), CryptoError> {
        sender
            .key
            .pss_verify::<Sha256>(&signed_bytes(from, envelope), &envelope.signature)
            .map_err(|_| CryptoError::BadSignature(from.to_string()))
    }

    /// The second half of [`Identity::open`]: unwraps the message key with
    /// our private key and decrypts. Call only after [`Identity::verify`].
    pub fn decrypt(&self, from: &str, envelope: &Envelope) -> Result<String, CryptoError> {
        let aes_key = self.key.oaep_decrypt::<Sha256>(&envelope.wrapped_key).map_err(|_| CryptoError::Undecryptable)?;
        let key = Key::<Aes256Gcm>::try_from(aes_key.as_slice()).map_err(|_| CryptoError::Undecryptable)?;
        let nonce = Nonce::try_from(envelope.nonce.as_slice()).map_err(|_| CryptoError::Undecryptable)?;
        let aad = associated_data(from, envelope);
        let plain = Aes256Gcm::new(&key)
            .decrypt(&nonce, Payload { msg: &envelope.ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| CryptoError::NotUtf8)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The envelope's header, bound to the ciphertext as AES-GCM associated data.
fn associated_data(from: &str, envelope: &Envelope) -> Vec<u8> {
    let mut out = b"ciphercast/1 sealed\0".to_vec();
    for field in [from.as_bytes(), envelope.to.as_bytes(), envelope.id.as_bytes()] {
        push_field(&mut out, field);
    }
    out.extend_from_slice(&envelope.sent_at.to_be_bytes());
    out
}

/// What the sender signs: the header and every sealed byte, each field
/// length-prefixed so no two different envelopes sign the same bytes.
fn signed_bytes(from: &str, envelope: &Envelope) -> Vec<u8> {
    let mut out = associated_data(from, envelope);
    for field in [&envelope.wrapped_key, &envelope.nonce, &envelope.ciphertext] {
        push_field(&mut out, field);
    }
    out
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

/// Writes a new private key file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Key generation takes a while; the tests share three identities.
    fn identities() -> &'static [Identity; 3] {
        static IDS: OnceLock<[Identity; 3]> = OnceLock::new();
        IDS.get_or_init(|| std::array::from_fn(|_| Identity::generate().unwrap()))
    }

    #[test]
    fn seals_any_length_for_the_recipient_only() {
        let [alice, bob, carol] = identities();
        let bob_key = PeerKey::from_pem(bob.public_pem()).unwrap();
        let alice_key = PeerKey::from_pem(alice.public_pem()).unwrap();
        let text = "héllo ✓\nsecond line ".repeat(2000);
        let envelope = alice.seal("alice", "bob", &bob_key, &text).unwrap();
        assert!(envelope.check_limits().is_ok());
        assert_eq!(bob.open("alice", &alice_key, &envelope).unwrap(), text);
        assert!(matches!(carol.open("alice", &alice_key, &envelope), Err(CryptoError::Undecryptable)));
    }

    #[test]
    fn detects_every_kind_of_tampering() {
        let [alice, bob, carol] = identities();
        let bob_key = PeerKey::from_pem(bob.public_pem()).unwrap();
        let alice_key = PeerKey::from_pem(alice.public_pem()).unwrap();
        let carol_key = PeerKey::from_pem(carol.public_pem()).unwrap();
        let envelope = alice.seal("alice", "bob", &bob_key, "meet at noon").unwrap();

        let mut flipped = envelope.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(bob.open("alice", &alice_key, &flipped), Err(CryptoError::BadSignature(_))));
        let mut later = envelope.clone();
        later.sent_at += 1;
        assert!(matches!(bob.open("alice", &alice_key, &later), Err(CryptoError::BadSignature(_))));
        // A server that relabels the sender: carol's key does not verify alice's signature.
        assert!(matches!(bob.open("carol", &carol_key, &envelope), Err(CryptoError::BadSignature(_))));
    }

    #[test]
    fn a_pss_signature_with_another_salt_length_is_rejected() {
        let [alice, bob, _] = identities();
        let bob_key = PeerKey::from_pem(bob.public_pem()).unwrap();
        let alice_key = PeerKey::from_pem(alice.public_pem()).unwrap();
        let mut envelope = alice.seal("alice", "bob", &bob_key, "salted").unwrap();
        let digest = Sha256::digest(signed_bytes("alice", &envelope));
        // The largest salt a 2048-bit key allows (OpenSSL's and Python's "max"), and a short one.
        let max_salt = alice.key.size() - 32 - 2;
        for salt in [max_salt, 20] {
            envelope.signature = alice.key.sign(rsa::Pss::<Sha256>::new_with_salt(salt), &digest).unwrap();
            let opened = bob.open("alice", &alice_key, &envelope);
            assert!(matches!(opened, Err(CryptoError::BadSignature(_))), "salt of {salt} bytes accepted");
        }
        // The same construction with a 32-byte salt is what the protocol expects.
        envelope.signature = alice.key.sign(rsa::Pss::<Sha256>::new_with_salt(32), &digest).unwrap();
        assert_eq!(bob.open("alice", &alice_key, &envelope).unwrap(), "salted");
    }

    #[test]
    fn associated_data_and_signed_bytes_have_the_documented_layout() {
        // The worked example of docs/PROTOCOL.md.
        let hex = |text: &str| -> Vec<u8> {
            let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
            digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
        };
        let envelope = Envelope {
            id: "x".into(),
            to: "b".into(),
            sent_at: 1,
            wrapped_key: vec![0xaa; 2],
            nonce: vec![0xbb; 12],
            ciphertext: vec![0xcc; 3],
            signature: Vec::new(),
        };
        let aad = hex("63 69 70 68 65 72 63 61 73 74 2f 31 20 73 65 61 6c 65 64 00
                       00 00 00 00 00 00 00 01 61
                       00 00 00 00 00 00 00 01 62
                       00 00 00 00 00 00 00 01 78
                       00 00 00 00 00 00 00 01");
        assert_eq!((associated_data("a", &envelope), aad.len()), (aad.clone(), 55));
        let rest = hex("00 00 00 00 00 00 00 02 aa aa
                        00 00 00 00 00 00 00 0c bb bb bb bb bb bb bb bb bb bb bb bb
                        00 00 00 00 00 00 00 03 cc cc cc");
        assert_eq!(signed_bytes("a", &envelope), [aad, rest].concat());

        // A sealed text: ciphertext is the text's length plus the 16-byte tag;
        // the wrapped key and the signature are as long as the 2048-bit moduli.
        let [alice, bob, _] = identities();
        let sealed = alice.seal("alice", "bob", &PeerKey::from_pem(bob.public_pem()).unwrap(), "hi").unwrap();
        assert_eq!((sealed.wrapped_key.len(), sealed.nonce.len(), sealed.ciphertext.len()), (256, 12, 2 + 16));
        assert_eq!((sealed.signature.len(), sealed.sealed_len()), (256, 256 + 12 + 18));
        assert!(sealed.id.len() == 32 && sealed.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }

    #[test]
    fn refuses_oversized_text_and_keys_out_of_range() {
        let [alice, bob, _] = identities();
        let bob_key = PeerKey::from_pem(bob.public_pem()).unwrap();
        let big = "x".repeat(MAX_PLAINTEXT_BYTES + 1);
        assert!(matches!(alice.seal("alice", "bob", &bob_key, &big), Err(CryptoError::TooLong { .. })));
        let small = PrivateKey::new(&mut rand::rng(), 1024).unwrap();
        let small_pem = small.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        assert!(matches!(PeerKey::from_pem(&small_pem), Err(CryptoError::KeySize { bits: 1024 })));
        assert!(matches!(
            PeerKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
            Err(CryptoError::NotAKey)
        ));
    }

    #[test]
    fn fingerprint_is_sixteen_groups_of_four_hex_digits() {
        let identity = &identities()[0];
        assert_eq!(Fingerprint::of_pem(identity.public_pem()), Some(identity.fingerprint()));
        assert_eq!(Fingerprint::parse(&identity.fingerprint().to_string()), Some(identity.fingerprint()));
        assert_eq!(Fingerprint::parse("3f2a 91c0"), None);
        let huge = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", "QUFB".repeat(5000));
        assert_eq!(Fingerprint::of_pem(&huge), None, "larger than any accepted key");
        let text = identity.fingerprint().to_string();
        let groups: Vec<&str> = text.split(' ').collect();
        assert_eq!(groups.len(), 16);
        assert!(groups.iter().all(|g| g.len() == 4 && g.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))));
    }

    #[test]
    fn identity_file_is_created_private_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("ciphercast-id-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("me.pem");
        let _ = fs::remove_file(&path);
        let (first, created) = Identity::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = Identity::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.fingerprint(), again.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(Identity::load_or_create(&path), Err(CryptoError::IdentityFile { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
