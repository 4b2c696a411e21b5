//! Interoperability of our RSA256 signatures with an independent implementation: the `openssl`
//! command line. The signed content is built here literally as alipayplus.md states it
//! (`POST {path}\n{Client-Id}.{time}.{body}`), not with `signed_content`, and the header's
//! URL-encoding and Base64 are done by hand, so a shared mistake cannot hide.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mpp_cancel::protocol::keys::{GeneratedKeyPair, KeyError, parse_private_key, parse_public_key};
use mpp_cancel::protocol::signature::{AuthError, RequestVerifier, ResponseSigner};

const OPENSSL: &str = "openssl";
const PATH: &str = "/aps/api/v1/payments/cancelPayment";
const CLIENT_ID: &str = "SANDBOX_5Y3A2N2YEB3002022";
const REQUEST_TIME: &str = "2026-11-21T18:05:07.123+08:00";
const RESPONSE_TIME: &str = "2026-11-21T18:05:07.456+08:00";
// Non-ASCII on purpose: the body is signed as bytes.
const REQUEST_BODY: &str =
    r#"{"acquirerId":"acq-1","pspId":"1022188000000000001","paymentRequestId":"pr-ü-1"}"#;
const RESPONSE_BODY: &str =
    r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#;

/// A fresh directory under the system temp dir, unique per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpp-sig-interop-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs openssl; panics with its stderr if it fails. Returns stdout.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`openssl`] but returns (success, stdout + stderr) without asserting.
fn openssl_status(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// An RSA-2048 key made by openssl, exported as Alipay+ hands keys out: PKCS#8 DER and SPKI
/// DER, plus the PEM files openssl itself uses. Made once per test binary.
struct OpensslKey {
    dir: PathBuf,
    private_pem: String,
    public_pem: String,
    private_der: Vec<u8>,
    public_der: Vec<u8>,
}

fn openssl_key() -> &'static OpensslKey {
    static KEY: OnceLock<OpensslKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = scratch("key");
        openssl(
            &dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "key.pem",
            ],
        );
        openssl(
            &dir,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out",
                "key.der",
            ],
        );
        openssl(
            &dir,
            &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        );
        openssl(
            &dir,
            &[
                "pkey", "-in", "key.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
            ],
        );
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        OpensslKey {
            private_pem: String::from_utf8(read("key.pem")).unwrap(),
            public_pem: String::from_utf8(read("pub.pem")).unwrap(),
            private_der: read("key.der"),
            public_der: read("pub.der"),
            dir,
        }
    })
}

/// alipayplus.md: "method, one space, the path without host, a newline, then Client-Id,
/// Request-Time and the body joined by `.`".
fn content_as_documented(path: &str, client_id: &str, time: &str, body: &[u8]) -> Vec<u8> {
    let mut content = format!("POST {path}\n{client_id}.{time}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// Standard Base64 with padding, then `+`, `/`, `=` URL-encoded.
fn header_by_hand(key_version: &str, signature: &[u8], spaced: bool) -> String {
    let value = STANDARD
        .encode(signature)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let sep = if spaced { ", " } else { "," };
    format!("algorithm=RSA256{sep}keyVersion={key_version}{sep}signature={value}")
}

/// The inverse of [`header_by_hand`], written independently of the crate's parser.
fn signature_from_header(header: &str) -> Vec<u8> {
    let value = header
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("signature="))
        .expect("a signature= part");
    let b64 = value
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    STANDARD.decode(b64).expect("standard padded base64")
}

fn openssl_sign(dir: &Path, key_pem_file: &str, content: &[u8], name: &str) -> Vec<u8> {
    let content_file = format!("{name}.content");
    let sig_file = format!("{name}.sig");
    std::fs::write(dir.join(&content_file), content).unwrap();
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            key_pem_file,
            "-out",
            &sig_file,
            &content_file,
        ],
    );
    std::fs::read(dir.join(sig_file)).unwrap()
}

fn verify_request(
    verifier: &RequestVerifier,
    path: &str,
    time: &str,
    header: &str,
    body: &[u8],
) -> Result<(), AuthError> {
    verifier.verify(
        "POST",
        path,
        Some(CLIENT_ID.as_bytes()),
        Some(time.as_bytes()),
        Some(header.as_bytes()),
        body,
    )
}

#[test]
fn a_request_signed_by_openssl_verifies_in_the_service() {
    let key = openssl_key();
    let content = content_as_documented(PATH, CLIENT_ID, REQUEST_TIME, REQUEST_BODY.as_bytes());
    let signature = openssl_sign(&key.dir, "key.pem", &content, "request");
    assert_eq!(signature.len(), 256);

    // Alipay+ hands out base64 SPKI DER; PEM must work the same.
    for public in [
        parse_public_key(&STANDARD.encode(&key.public_der)).unwrap(),
        parse_public_key(&key.public_pem).unwrap(),
    ] {
        let verifier = RequestVerifier::new(CLIENT_ID, [("1".to_string(), public)]);
        for spaced in [false, true] {
            let header = header_by_hand("1", &signature, spaced);
            assert_eq!(
                verify_request(
                    &verifier,
                    PATH,
                    REQUEST_TIME,
                    &header,
                    REQUEST_BODY.as_bytes()
                ),
                Ok(()),
                "{header}"
            );
        }
        // The same signature does not cover another path, time or body.
        let header = header_by_hand("1", &signature, false);
        for (path, time, body) in [
            ("/aps/api/v1/payments/pay", REQUEST_TIME, REQUEST_BODY),
            (PATH, RESPONSE_TIME, REQUEST_BODY),
            (
                PATH,
                REQUEST_TIME,
                &REQUEST_BODY.replace("pr-ü-1", "pr-ü-2"),
            ),
        ] {
            assert!(matches!(
                verify_request(&verifier, path, time, &header, body.as_bytes()),
                Err(AuthError::InvalidSignature(_))
            ));
        }
    }
}

#[test]
fn a_response_signed_by_the_service_verifies_with_openssl() {
    let key = openssl_key();
    let private = parse_private_key(&STANDARD.encode(&key.private_der)).unwrap();
    // The PEM form of the same key signs identically (PKCS#1 v1.5 is deterministic).
    let from_pem = parse_private_key(&key.private_pem).unwrap();
    let signer = ResponseSigner::new(private, "1".into());
    let header = signer.sign(
        "POST",
        PATH,
        CLIENT_ID,
        RESPONSE_TIME,
        RESPONSE_BODY.as_bytes(),
    );
    assert_eq!(
        header,
        ResponseSigner::new(from_pem, "1".into()).sign(
            "POST",
            PATH,
            CLIENT_ID,
            RESPONSE_TIME,
            RESPONSE_BODY.as_bytes()
        )
    );
    assert!(
        header.starts_with("algorithm=RSA256,keyVersion=1,signature="),
        "{header}"
    );

    let dir = scratch("response");
    std::fs::write(dir.join("pub.pem"), &key.public_pem).unwrap();
    std::fs::write(dir.join("sig.bin"), signature_from_header(&header)).unwrap();
    let content = content_as_documented(PATH, CLIENT_ID, RESPONSE_TIME, RESPONSE_BODY.as_bytes());
    std::fs::write(dir.join("content.bin"), &content).unwrap();
    let out = openssl(
        &dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.bin",
            "content.bin",
        ],
    );
    assert_eq!(out.trim(), "Verified OK");

    // And openssl refuses it over one changed byte, so the check above means something.
    let mut tampered = content.clone();
    *tampered.last_mut().unwrap() ^= 1;
    std::fs::write(dir.join("tampered.bin"), &tampered).unwrap();
    let (ok, text) = openssl_status(
        &dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.bin",
            "tampered.bin",
        ],
    );
    assert!(!ok && text.contains("Verification failure"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generated_keys_load_in_openssl_and_interoperate() {
    let pair = GeneratedKeyPair::generate_rsa_2048().unwrap();
    let dir = scratch("generated");
    std::fs::write(dir.join("priv.der"), &pair.private_pkcs8_der).unwrap();
    std::fs::write(dir.join("pub.der"), &pair.public_spki_der).unwrap();
    std::fs::write(dir.join("priv.pem"), pair.private_pem()).unwrap();

    let text = openssl(
        &dir,
        &[
            "pkey", "-inform", "DER", "-in", "priv.der", "-noout", "-text",
        ],
    );
    assert!(text.contains("Private-Key: (2048 bit"), "{text}");
    let text = openssl(
        &dir,
        &[
            "pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-noout", "-text",
        ],
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    // The PEM forms are what openssl itself writes for the same key.
    let public_pem = openssl(
        &dir,
        &["pkey", "-inform", "DER", "-in", "priv.der", "-pubout"],
    );
    assert_eq!(public_pem, pair.public_pem());
    let private_pem = openssl(&dir, &["pkey", "-inform", "DER", "-in", "priv.der"]);
    assert_eq!(private_pem, pair.private_pem());
    // The base64 forms are the DER, one line.
    assert_eq!(
        STANDARD.decode(pair.public_base64()).unwrap(),
        pair.public_spki_der
    );
    assert_eq!(
        STANDARD.decode(pair.private_base64()).unwrap(),
        pair.private_pkcs8_der
    );

    // openssl signs with the generated private key; the service verifies with its public half.
    let content = content_as_documented(PATH, CLIENT_ID, REQUEST_TIME, REQUEST_BODY.as_bytes());
    let signature = openssl_sign(&dir, "priv.pem", &content, "gen");
    let verifier = RequestVerifier::new(CLIENT_ID, [("7".to_string(), pair.public_key().unwrap())]);
    let header = header_by_hand("7", &signature, false);
    assert_eq!(
        verify_request(
            &verifier,
            PATH,
            REQUEST_TIME,
            &header,
            REQUEST_BODY.as_bytes()
        ),
        Ok(())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn traditional_pkcs1_pem_keys_load_too() {
    let dir = scratch("pkcs1");
    openssl(&dir, &["genrsa", "-traditional", "-out", "rsa.pem", "2048"]);
    openssl(
        &dir,
        &[
            "rsa",
            "-in",
            "rsa.pem",
            "-RSAPublicKey_out",
            "-out",
            "rsapub.pem",
        ],
    );
    let private_pem = std::fs::read_to_string(dir.join("rsa.pem")).unwrap();
    let public_pem = std::fs::read_to_string(dir.join("rsapub.pem")).unwrap();
    assert!(private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(public_pem.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let private = parse_private_key(&private_pem).unwrap();
    assert_eq!(private.public_key(), parse_public_key(&public_pem).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn small_and_non_rsa_keys_are_refused_at_load() {
    let dir = scratch("refused");
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "small.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "pkey",
            "-in",
            "small.pem",
            "-pubout",
            "-out",
            "small.pub.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ],
    );
    openssl(
        &dir,
        &["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub.pem"],
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    for file in ["small.pem", "ec.pem"] {
        assert!(
            matches!(
                parse_private_key(&read(file)),
                Err(KeyError::Rejected { .. })
            ),
            "{file}"
        );
    }
    for file in ["small.pub.pem", "ec.pub.pem"] {
        assert!(
            matches!(
                parse_public_key(&read(file)),
                Err(KeyError::Rejected { .. })
            ),
            "{file}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
