//! RSA keys for the signature tests, generated once per test run: two versions of "Alipay+'s"
//! key (rotation) and ours.

use mpp_cancel::protocol::keys::GeneratedKeyPair;
use std::sync::OnceLock;

pub const CLIENT_ID: &str = "TEST_ALIPAY_CLIENT";

pub struct TestKeys {
    pub alipay_v1: GeneratedKeyPair,
    pub alipay_v2: GeneratedKeyPair,
    pub mpp: GeneratedKeyPair,
}

pub fn test_keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let generate = || GeneratedKeyPair::generate_rsa_2048().expect("RSA key generation");
        TestKeys {
            alipay_v1: generate(),
            alipay_v2: generate(),
            mpp: generate(),
        }
    })
}
