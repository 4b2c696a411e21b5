//! RSA key material for Alipay+ signatures: parsing our private key and Alipay+'s public keys
//! from configuration (base64 DER or PEM, inline or from a file), and generating a fresh
//! RSA-2048 pair in the formats Alipay+'s portal takes.
//!
//! The crypto is aws-lc-rs: constant-time RSA with blinding (the `rsa` crate's private-key
//! operations carry RUSTSEC-2023-0071), fast, and, unlike ring, able to generate RSA keys, so
//! `mpp-cancel keys generate` needs no external tool.
//!
//! Formats accepted, because engineers paste what they have:
//! - private key: PKCS#8 DER in base64 (what Alipay+ uses), PEM `PRIVATE KEY` (PKCS#8) or PEM
//!   `RSA PRIVATE KEY` (PKCS#1, what `openssl genrsa -traditional` writes);
//! - public key: X.509 SubjectPublicKeyInfo DER in base64 (what Alipay+'s portal shows), PEM
//!   `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY` PEM.
//!
//! Base64 may be wrapped over several lines and padding is optional. Encrypted PEM is refused
//! with a clear message. Keys smaller than 2048 bits are refused at load time rather than
//! failing every single verification later.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeyPair as RsaKeyPair, KeySize, PublicEncryptingKey, PublicKey as RsaPublicKey,
};
use aws_lc_rs::signature::KeyPair as _;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The smallest RSA modulus we accept, in bits (Alipay+ issues 2048-bit keys).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus aws-lc-rs verifies with PKCS#1 v1.5 / SHA-256.
pub const MAX_RSA_BITS: usize = 8192;

/// Standard-alphabet base64 that accepts input with or without `=` padding.
pub(crate) const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key could not be read, parsed or made. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is not valid base64 ({0})")]
    Base64(String),
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("{what} rejected: {reason}")]
    Rejected { what: &'static str, reason: String },
    #[error("cannot read key file {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("both an inline private key and a private key file are configured; set only one")]
    Ambiguous,
    #[error("RSA key generation failed")]
    Generation,
    #[error("RSA signing failed")]
    Signing,
}

/// An RSA private key that signs with RSASSA-PKCS1-v1_5 / SHA-256. Cheap to clone (shared).
///
/// `Debug` shows the size and the public key's fingerprint, never the key itself.
#[derive(Clone)]
pub struct PrivateKey(Arc<PrivateKeyInner>);

struct PrivateKeyInner {
    pair: RsaKeyPair,
    /// Derived once at load time, so handing out the public half never fails.
    public: PublicKey,
}

/// An RSA public key that verifies RSASSA-PKCS1-v1_5 / SHA-256, parsed once at load time so a
/// verification does no parsing. Cheap to clone.
#[derive(Clone)]
pub struct PublicKey(Arc<PublicKeyInner>);

struct PublicKeyInner {
    parsed: ParsedPublicKey,
    spki_der: Vec<u8>,
    bits: usize,
}

impl PrivateKey {
    /// Parses PKCS#8 DER (or, as a convenience, PKCS#1 `RSAPrivateKey` DER).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .or_else(|pkcs8_err| RsaKeyPair::from_der(der).map_err(|_| pkcs8_err))
            .map_err(|e| KeyError::Rejected {
                what: "private key",
                reason: format!(
                    "not an RSA PKCS#8 key of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits ({e})"
                ),
            })?;
        let bits = pair.public_modulus_len() * 8;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::Rejected {
                what: "private key",
                reason: format!(
                    "RSA key of {bits} bits, {MIN_RSA_BITS} to {MAX_RSA_BITS} required"
                ),
            });
        }
        let spki: PublicKeyX509Der<'static> =
            pair.public_key().as_der().map_err(|_| KeyError::Rejected {
                what: "private key",
                reason: "cannot encode its public half".into(),
            })?;
        let public = PublicKey::from_der(spki.as_ref())?;
        Ok(Self(Arc::new(PrivateKeyInner { pair, public })))
    }

    /// Size of the modulus in bits (2048 for Alipay+ keys).
    pub fn bits(&self) -> usize {
        self.0.pair.public_modulus_len() * 8
    }

    /// The matching public key: what goes into Alipay+'s portal.
    pub fn public_key(&self) -> PublicKey {
        self.0.public.clone()
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`: the raw signature bytes.
    ///
    /// Fails only if aws-lc itself fails (allocation): the key was validated when it was loaded.
    pub fn sign_pkcs1_sha256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.0.pair.public_modulus_len()];
        // aws-lc-rs ignores the rng for PKCS#1 v1.5 (deterministic padding); ring's API wants one.
        self.0
            .pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| KeyError::Signing)?;
        Ok(signature)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("bits", &self.bits())
            .field("public_fingerprint", &self.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses X.509 SubjectPublicKeyInfo DER (or PKCS#1 `RSAPublicKey` DER).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let rejected = |reason: String| KeyError::Rejected {
            what: "public key",
            reason,
        };
        let rsa = RsaPublicKey::from_der(der)
            .map_err(|e| rejected(format!("not an RSA SubjectPublicKeyInfo ({e})")))?;
        let spki: PublicKeyX509Der<'static> = rsa
            .as_der()
            .map_err(|_| rejected("cannot re-encode as SubjectPublicKeyInfo".into()))?;
        let spki_der = spki.as_ref().to_vec();
        let bits = PublicEncryptingKey::from_der(&spki_der)
            .map_err(|e| rejected(format!("unusable RSA key ({e})")))?
            .key_size_bits();
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(rejected(format!(
                "RSA key of {bits} bits, {MIN_RSA_BITS} to {MAX_RSA_BITS} required"
            )));
        }
        let parsed = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &spki_der)
            .map_err(|e| rejected(e.to_string()))?;
        Ok(Self(Arc::new(PublicKeyInner {
            parsed,
            spki_der,
            bits,
        })))
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.0.bits
    }

    /// The canonical X.509 SubjectPublicKeyInfo DER, whatever form the key was given in.
    pub fn spki_der(&self) -> &[u8] {
        &self.0.spki_der
    }

    /// `sha256:` and the first 16 hex digits of SHA-256 over the SPKI DER: enough to tell, in a
    /// log line, which key is loaded and whether it is the one uploaded to the portal.
    pub fn fingerprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.0.spki_der);
        let hex: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }

    /// Whether `signature` is a valid RSASSA-PKCS1-v1_5 / SHA-256 signature of `message`.
    pub fn verify_pkcs1_sha256(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.parsed.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.spki_der == other.0.spki_der
    }
}

impl Eq for PublicKey {}

/// The public half of `private`, as SubjectPublicKeyInfo.
pub fn public_key_of(private: &PrivateKey) -> PublicKey {
    private.public_key()
}

/// A PEM block found in the input: its label and decoded bytes.
struct Pem {
    label: String,
    der: Vec<u8>,
}

/// Reads the first PEM block. Hand-rolled (a dozen lines) rather than a dependency.
fn parse_pem(text: &str) -> Result<Pem, KeyError> {
    let bad = |reason: &str| KeyError::Pem(reason.to_string());
    let start = text
        .find("-----BEGIN")
        .ok_or_else(|| bad("no BEGIN line"))?;
    let rest = &text[start + "-----BEGIN".len()..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| bad("unterminated BEGIN line"))?;
    let label = rest[..label_end].trim().to_string();
    let body_and_end = &rest[label_end + "-----".len()..];
    let end_marker = format!("-----END {label}-----");
    let end = body_and_end
        .find(&end_marker)
        .ok_or_else(|| KeyError::Pem(format!("no END line for {label}")))?;
    let body = &body_and_end[..end];
    if body.contains("Proc-Type:") || body.contains("DEK-Info:") || label.contains("ENCRYPTED") {
        return Err(bad(
            "encrypted keys are not supported; export it unencrypted (openssl pkcs8 -nocrypt)",
        ));
    }
    let der = decode_base64_lines(body)?;
    Ok(Pem { label, der })
}

/// Decodes base64 that may be wrapped over lines or indented.
fn decode_base64_lines(text: &str) -> Result<Vec<u8>, KeyError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(KeyError::Empty);
    }
    BASE64_LENIENT
        .decode(compact.as_bytes())
        .map_err(|e| KeyError::Base64(describe_base64_error(&e)))
}

/// base64's own messages quote the offending byte; say where, not what.
fn describe_base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("invalid last symbol at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".to_string(),
    }
}

/// Base64 DER PKCS#8, or PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`).
pub fn parse_private_key(text_or_b64: &str) -> Result<PrivateKey, KeyError> {
    PrivateKey::from_der(&key_der(text_or_b64, "PRIVATE KEY")?)
}

/// Base64 DER X.509 SubjectPublicKeyInfo, or PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`).
pub fn parse_public_key(text_or_b64: &str) -> Result<PublicKey, KeyError> {
    PublicKey::from_der(&key_der(text_or_b64, "PUBLIC KEY")?)
}

/// The DER inside a PEM block labelled `label` (or `RSA {label}`), or inside plain base64.
fn key_der(text_or_b64: &str, label: &str) -> Result<Vec<u8>, KeyError> {
    let text = text_or_b64.trim();
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    if !text.contains("-----BEGIN") {
        return decode_base64_lines(text);
    }
    let pem = parse_pem(text)?;
    if pem.label == label || pem.label.strip_prefix("RSA ") == Some(label) {
        Ok(pem.der)
    } else {
        Err(KeyError::Pem(format!(
            "expected a {label} block, found {}",
            pem.label
        )))
    }
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    let bytes = std::fs::read(path).map_err(|e| KeyError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // A raw DER file (`openssl pkey -outform DER`) is accepted too: re-encode it so one parser
    // serves every form. DER starts with a SEQUENCE tag (0x30), which no text key does.
    if bytes.first() == Some(&0x30) {
        return Ok(base64::engine::general_purpose::STANDARD.encode(&bytes));
    }
    String::from_utf8(bytes).map_err(|_| KeyError::Io {
        path: path.to_path_buf(),
        reason: "neither text (base64 or PEM) nor DER".into(),
    })
}

/// Our private key from configuration: inline text, or a file holding base64 DER, PEM or raw
/// DER. `Ok(None)` when neither is set (the caller decides whether that is allowed); both set
/// is an error rather than a silent preference.
pub fn load_private_key(
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<PrivateKey>, KeyError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(KeyError::Ambiguous),
        (Some(text), None) => parse_private_key(text).map(Some),
        (None, Some(path)) => parse_private_key(&read_key_file(path)?).map(Some),
        (None, None) => Ok(None),
    }
}

/// One Alipay+ public key from configuration. `value` is, in this order:
/// - `file:<path>`: read from that file (base64 DER, PEM or raw DER);
/// - inline base64 DER or PEM;
/// - failing that, if `value` names an existing file, that file: so
///   `public_keys.1 = "/etc/mpp/alipayplus-v1.pem"` works without the prefix. A valid inline key
///   always wins, so a key can never be mistaken for a path.
pub fn load_public_key(value: &str) -> Result<PublicKey, KeyError> {
    if let Some(path) = value.strip_prefix("file:") {
        return parse_public_key(&read_key_file(Path::new(path.trim()))?);
    }
    match parse_public_key(value) {
        Ok(key) => Ok(key),
        Err(inline_err) => {
            let path = Path::new(value.trim());
            if !value.trim().is_empty() && path.is_file() {
                parse_public_key(&read_key_file(path)?)
            } else {
                Err(inline_err)
            }
        }
    }
}

/// A fresh RSA-2048 key pair for `mpp-cancel keys generate`: the private half stays with the MPP,
/// the public half is uploaded to Alipay+'s portal.
///
/// `Debug` does not print the private key.
pub struct GeneratedKeyPair {
    /// PKCS#8 v1 DER.
    pub private_pkcs8_der: Vec<u8>,
    /// X.509 SubjectPublicKeyInfo DER.
    pub public_spki_der: Vec<u8>,
}

impl GeneratedKeyPair {
    /// Generates with aws-lc's RSA key generation (system randomness).
    pub fn generate_rsa_2048() -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generation)?;
        let private: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::Generation)?;
        let public: PublicKeyX509Der<'static> = pair
            .public_key()
            .as_der()
            .map_err(|_| KeyError::Generation)?;
        Ok(Self {
            private_pkcs8_der: private.as_ref().to_vec(),
            public_spki_der: public.as_ref().to_vec(),
        })
    }

    /// The private key as Alipay+ writes it: base64 of PKCS#8 DER, one line.
    pub fn private_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.private_pkcs8_der)
    }

    /// The public key as Alipay+'s portal takes it: base64 of SPKI DER, one line.
    pub fn public_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.public_spki_der)
    }

    /// `-----BEGIN PRIVATE KEY-----` PEM (PKCS#8), for tools such as openssl.
    pub fn private_pem(&self) -> String {
        to_pem("PRIVATE KEY", &self.private_pkcs8_der)
    }

    /// `-----BEGIN PUBLIC KEY-----` PEM (SPKI).
    pub fn public_pem(&self) -> String {
        to_pem("PUBLIC KEY", &self.public_spki_der)
    }

    /// The private half, parsed.
    pub fn private_key(&self) -> Result<PrivateKey, KeyError> {
        PrivateKey::from_der(&self.private_pkcs8_der)
    }

    /// The public half, parsed.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        PublicKey::from_der(&self.public_spki_der)
    }
}

impl fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("public_base64", &self.public_base64())
            .finish_non_exhaustive()
    }
}

/// PEM with 64-character lines, as RFC 7468 asks.
fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One generated pair per test binary: RSA generation takes ~100 ms.
    pub(crate) fn test_pair() -> &'static GeneratedKeyPair {
        static PAIR: OnceLock<GeneratedKeyPair> = OnceLock::new();
        PAIR.get_or_init(|| GeneratedKeyPair::generate_rsa_2048().expect("keygen"))
    }

    /// A second, different pair (key rotation tests).
    pub(crate) fn other_pair() -> &'static GeneratedKeyPair {
        static PAIR: OnceLock<GeneratedKeyPair> = OnceLock::new();
        PAIR.get_or_init(|| GeneratedKeyPair::generate_rsa_2048().expect("keygen"))
    }

    #[test]
    fn generated_pair_is_2048_bits_and_halves_match() {
        let pair = test_pair();
        let private = pair.private_key().unwrap();
        let public = pair.public_key().unwrap();
        assert_eq!(private.bits(), 2048);
        assert_eq!(public.bits(), 2048);
        assert_eq!(public_key_of(&private), public);
        let sig = private.sign_pkcs1_sha256(b"hello").unwrap();
        assert_eq!(sig.len(), 256);
        assert!(public.verify_pkcs1_sha256(b"hello", &sig));
        assert!(!public.verify_pkcs1_sha256(b"hellO", &sig));
    }

    #[test]
    fn base64_der_and_pem_load_to_the_same_key() {
        let pair = test_pair();
        let from_b64 = parse_public_key(&pair.public_base64()).unwrap();
        let from_pem = parse_public_key(&pair.public_pem()).unwrap();
        assert_eq!(from_b64, from_pem);
        assert_eq!(from_b64.spki_der(), pair.public_spki_der.as_slice());

        let p1 = parse_private_key(&pair.private_base64()).unwrap();
        let p2 = parse_private_key(&pair.private_pem()).unwrap();
        assert_eq!(p1.public_key(), p2.public_key());
        assert_eq!(p1.public_key(), from_b64);
    }

    #[test]
    fn wrapped_indented_and_unpadded_base64_is_accepted() {
        let pair = test_pair();
        let b64 = pair.public_base64();
        let wrapped: String = b64
            .as_bytes()
            .chunks(60)
            .map(|c| format!("    {}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(
            parse_public_key(&wrapped).unwrap().spki_der(),
            pair.public_spki_der.as_slice()
        );
        let unpadded = b64.trim_end_matches('=');
        assert!(parse_public_key(unpadded).is_ok());
    }

    #[test]
    fn pem_label_must_match_the_kind_of_key() {
        let pair = test_pair();
        assert!(matches!(
            parse_public_key(&pair.private_pem()),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(
            parse_private_key(&pair.public_pem()),
            Err(KeyError::Pem(_))
        ));
        // A private key given where a public one is expected, in base64 DER: rejected, too.
        assert!(matches!(
            parse_public_key(&pair.private_base64()),
            Err(KeyError::Rejected { .. })
        ));
        assert!(matches!(
            parse_private_key(&pair.public_base64()),
            Err(KeyError::Rejected { .. })
        ));
    }

    #[test]
    fn bad_inputs_give_errors_not_panics() {
        assert_eq!(parse_public_key("").unwrap_err(), KeyError::Empty);
        assert_eq!(parse_private_key("  \n ").unwrap_err(), KeyError::Empty);
        assert!(matches!(
            parse_public_key("not base64!"),
            Err(KeyError::Base64(_))
        ));
        assert!(matches!(
            parse_public_key("AAAA"),
            Err(KeyError::Rejected { .. })
        ));
        assert!(matches!(
            parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n"),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(
            parse_private_key(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
            ),
            Err(KeyError::Pem(m)) if m.contains("encrypted")
        ));
        assert!(matches!(
            parse_public_key("-----BEGIN "),
            Err(KeyError::Pem(_))
        ));
    }

    #[test]
    fn debug_never_prints_key_material() {
        let pair = test_pair();
        let private = pair.private_key().unwrap();
        let public = pair.public_key().unwrap();
        let b64_private = pair.private_base64();
        let b64_public = pair.public_base64();
        for text in [
            format!("{private:?}"),
            format!("{public:?}"),
            format!("{pair:?}"),
        ] {
            assert!(!text.contains(&b64_private[40..80]), "{text}");
            assert!(!text.contains(&b64_private[200..240]), "{text}");
        }
        assert!(!format!("{public:?}").contains(&b64_public[40..80]));
        assert!(format!("{private:?}").contains("2048"));
    }

    #[test]
    fn files_and_file_prefix_load() {
        let dir = std::env::temp_dir().join(format!("mpp-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = test_pair();
        let pub_pem = dir.join("pub.pem");
        let pub_der = dir.join("pub.der");
        let priv_b64 = dir.join("priv.b64");
        std::fs::write(&pub_pem, pair.public_pem()).unwrap();
        std::fs::write(&pub_der, &pair.public_spki_der).unwrap();
        std::fs::write(&priv_b64, pair.private_base64()).unwrap();

        let expected = pair.public_key().unwrap();
        let prefixed = format!("file:{}", pub_pem.display());
        assert_eq!(load_public_key(&prefixed).unwrap(), expected);
        assert_eq!(
            load_public_key(pub_pem.to_str().unwrap()).unwrap(),
            expected
        );
        assert_eq!(
            load_public_key(pub_der.to_str().unwrap()).unwrap(),
            expected
        );
        assert_eq!(load_public_key(&pair.public_base64()).unwrap(), expected);
        assert!(matches!(
            load_public_key("file:/nonexistent/key.pem"),
            Err(KeyError::Io { .. })
        ));

        let loaded = load_private_key(None, Some(&priv_b64)).unwrap().unwrap();
        assert_eq!(loaded.public_key(), expected);
        assert!(load_private_key(None, None).unwrap().is_none());
        assert_eq!(
            load_private_key(Some("x"), Some(&priv_b64)).unwrap_err(),
            KeyError::Ambiguous
        );
        let inline = load_private_key(Some(&pair.private_pem()), None)
            .unwrap()
            .unwrap();
        assert_eq!(inline.public_key(), expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn key_parsers_never_panic(s in "\\PC{0,300}", pem in proptest::bool::ANY) {
            let text = if pem { format!("-----BEGIN PUBLIC KEY-----\n{s}\n-----END PUBLIC KEY-----") } else { s };
            let _ = parse_public_key(&text);
            let _ = parse_private_key(&text.replace("PUBLIC", "PRIVATE"));
            let _ = load_public_key(&text);
        }
    }

    #[test]
    fn pem_round_trip_has_64_char_lines() {
        let pem = test_pair().public_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
    }
}
