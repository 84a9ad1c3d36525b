//! Proof that a listener is the agent of this state directory before anything is sent to it.
//! The client sends a fresh random nonce; the agent answers HMAC-SHA256 of the nonce, its port
//! and its version under the token of `agent.json` (mode 0600). Only the holder of the token
//! can answer, and the token itself never goes to a listener that has not answered, e.g.
//! whatever took the port of an agent that died.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Outside the bearer-token check: it is how a client decides whether to send the token.
pub const PATH: &str = "/v1/handshake";
/// This build's version; a client restarts an agent that answers another one.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const NONCE_HEX_LEN: usize = 64;
/// Test support only: an agent started with this variable set reports its value as its
/// version, so that a test can run an agent of "another version" and watch a CLI restart it.
/// Nothing but tests sets it.
pub const TEST_VERSION_VAR: &str = "KAAPI_AGENT_TEST_VERSION";

/// The version this agent process reports: [`VERSION`], unless [`TEST_VERSION_VAR`] is set.
pub fn reported_version() -> String {
    std::env::var(TEST_VERSION_VAR)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| VERSION.to_owned())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    pub version: String,
    /// Hex HMAC-SHA256 under the token of `handshake\n{port}\n{nonce}\n{version}`.
    pub proof: String,
}

pub fn new_nonce() -> String {
    let bytes: [u8; NONCE_HEX_LEN / 2] = rand::random();
    hex(&bytes)
}

/// Whether a challenge is one a client of this crate sends (the agent answers nothing else).
pub fn is_valid_nonce(nonce: &str) -> bool {
    nonce.len() == NONCE_HEX_LEN && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The answer of an agent of `version` to `nonce`, for the API listening on `port`.
pub fn answer(token: &str, port: u16, nonce: &str, version: &str) -> Proof {
    Proof {
        version: version.to_owned(),
        proof: hex(&mac(token, port, nonce, version)),
    }
}

/// Whether `proof` answers `nonce` sent to `port` with the token.
pub fn verify(token: &str, port: u16, nonce: &str, proof: &Proof) -> bool {
    let expected = hex(&mac(token, port, nonce, &proof.version));
    expected.len() == proof.proof.len()
        && expected
            .bytes()
            .zip(proof.proof.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn mac(token: &str, port: u16, nonce: &str, version: &str) -> Vec<u8> {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; an empty result simply never verifies.
        Err(_) => return Vec::new(),
    };
    mac.update(format!("handshake\n{port}\n{nonce}\n{version}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_holder_answers_for_that_port_and_nonce() {
        let nonce = new_nonce();
        assert!(is_valid_nonce(&nonce));
        let proof = answer("token-a", 4000, &nonce, VERSION);
        assert!(verify("token-a", 4000, &nonce, &proof));
        assert!(!verify("token-b", 4000, &nonce, &proof));
        assert!(!verify("token-a", 4001, &nonce, &proof));
        assert!(!verify("token-a", 4000, &new_nonce(), &proof));
        let mut forged = proof.clone();
        forged.version = "0.0.0".to_owned();
        assert!(!verify("token-a", 4000, &nonce, &forged));
    }

    #[test]
    fn odd_nonces_are_refused() {
        assert!(!is_valid_nonce(""));
        assert!(!is_valid_nonce(&"z".repeat(NONCE_HEX_LEN)));
        assert!(!is_valid_nonce(&"a".repeat(NONCE_HEX_LEN + 1)));
    }
}
