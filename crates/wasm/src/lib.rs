//! Beaufort in the browser: the receipt verifier of the node's `/verify` page, and the QR codes
//! of the wallet and the dashboard ([`qr`]), compiled to WebAssembly with wasm-bindgen.
//!
//! A customer should not have to trust the shop's page to believe a receipt: the page hands the
//! receipt and the network's member keys to this module, which runs the very check
//! `beaufort verify` runs ([`beaufort_receipt`], on `beaufort-core` and `beaufort-crypto` with
//! blst), and the page shows a value only from what the check returns. No cryptography is written
//! in JavaScript.
//!
//! Every export is a thin wrapper over a plain Rust function of the same name with a Rust error,
//! so native tests (and the native side of the wasm-vs-native measurement) call exactly the code
//! the browser runs; only the error conversion to `JsError` is browser-only.

use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::{
    MemberIndex, MemberKey, Membership, QuorumCertificate, SecretKey, Signature, Signer,
};
use beaufort_receipt::{NetworkKeys, ReceiptChecker, ReceiptError, Verified};
use wasm_bindgen::prelude::*;

pub mod qr;

/// The receipt checker of one network, built once from its description (`GET /v1/network`):
/// loading checks every member's proof of possession, which is the expensive part.
#[wasm_bindgen]
pub struct ReceiptVerifier {
    checker: ReceiptChecker,
    member_names: Vec<Option<String>>,
}

impl ReceiptVerifier {
    /// Parses a network description and checks its member keys.
    pub fn load(network_json: &str) -> Result<ReceiptVerifier, ReceiptError> {
        let network = NetworkKeys::from_json(network_json)?;
        Ok(ReceiptVerifier {
            checker: network.checker()?,
            member_names: network.members.into_iter().map(|m| m.name).collect(),
        })
    }

    /// Checks a receipt's JSON; only the result may be shown as the certified value.
    pub fn check(&self, receipt_json: &str) -> Result<VerifiedReceipt, ReceiptError> {
        let verified = self.checker.verify_json(receipt_json)?;
        let signer_names = verified
            .certified
            .qc
            .signers
            .members()
            .map(|(i, _)| {
                self.member_names
                    .get(usize::from(i))
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| format!("member {i}"))
            })
            .collect();
        Ok(VerifiedReceipt {
            verified,
            signer_names,
        })
    }
}

#[wasm_bindgen]
impl ReceiptVerifier {
    /// Loads a network description (JSON text); throws if it is malformed or a member key is
    /// invalid.
    #[wasm_bindgen(constructor)]
    pub fn new(network_json: &str) -> Result<ReceiptVerifier, JsError> {
        ReceiptVerifier::load(network_json).map_err(js_error)
    }

    /// The network's name.
    #[wasm_bindgen(getter, js_name = networkName)]
    pub fn network_name(&self) -> String {
        self.checker.name().to_owned()
    }

    /// The network id in hex (what receipts name).
    #[wasm_bindgen(getter, js_name = networkId)]
    pub fn network_id(&self) -> String {
        self.checker.membership().network_id().to_hex()
    }

    /// The number of members.
    #[wasm_bindgen(getter)]
    pub fn members(&self) -> usize {
        self.checker.membership().n()
    }

    /// The number of signers a certificate needs.
    #[wasm_bindgen(getter)]
    pub fn quorum(&self) -> usize {
        self.checker.membership().quorum()
    }

    /// Checks a receipt (JSON text); throws with the reason when it is refused.
    pub fn verify(&self, receipt_json: &str) -> Result<VerifiedReceipt, JsError> {
        self.check(receipt_json).map_err(js_error)
    }
}

/// A receipt whose certificate verified. Its value comes from the certified bytes only, never from
/// the receipt's text fields.
#[wasm_bindgen]
pub struct VerifiedReceipt {
    verified: Verified,
    signer_names: Vec<String>,
}

#[wasm_bindgen]
impl VerifiedReceipt {
    /// The key.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.verified.key_text()
    }

    /// The value as text, when it is UTF-8 (absent for binary values and deletes).
    #[wasm_bindgen(getter)]
    pub fn text(&self) -> Option<String> {
        beaufort_receipt::value_text(self.verified.certified.value.as_data())
    }

    /// The value's bytes in hex (absent for a delete).
    #[wasm_bindgen(getter)]
    pub fn hex(&self) -> Option<String> {
        self.verified.certified.value.as_data().map(hex::encode)
    }

    /// The key was deleted.
    #[wasm_bindgen(getter)]
    pub fn deleted(&self) -> bool {
        self.verified.certified.value.as_data().is_none()
    }

    /// The value as `beaufort verify` prints it: quoted text, `0x` hex or `<deleted>`.
    #[wasm_bindgen(getter)]
    pub fn shown(&self) -> String {
        self.verified.shown()
    }

    /// The view it was certified in (as a float: JavaScript numbers; exact below 2^53).
    #[wasm_bindgen(getter)]
    pub fn view(&self) -> f64 {
        self.verified.certified.view as f64
    }

    /// The round it was certified in.
    #[wasm_bindgen(getter)]
    pub fn round(&self) -> u32 {
        self.verified.certified.round
    }

    /// How many members signed.
    #[wasm_bindgen(getter)]
    pub fn signers(&self) -> usize {
        self.verified.signers
    }

    /// Who signed: display names where the network gives them.
    #[wasm_bindgen(getter, js_name = signerNames)]
    pub fn signer_names(&self) -> Vec<String> {
        self.signer_names.clone()
    }
}

/// A committee with signatures to time BLS in the browser against native code: the same
/// operations the node runs per vote (sign, verify one) and per certificate (verify a quorum's
/// aggregate). Keys are derived from fixed seeds, so both sides time identical work.
#[wasm_bindgen]
pub struct BenchFixture {
    members: Vec<MemberKey>,
    membership: Membership,
    signer: Signer,
    message: Vec<u8>,
    signature: Signature,
    qc: QuorumCertificate,
}

impl BenchFixture {
    /// `n` members of which the first `signers` sign the certificate.
    pub fn build(n: u16, signers: u16) -> Result<BenchFixture, String> {
        if signers == 0 || signers > n {
            return Err(format!("{signers} signers of {n} members"));
        }
        let secrets: Vec<SecretKey> = (0..n)
            .map(|i| {
                let seed = hash(Domain::Other, &[b"wasm bench member", &i.to_le_bytes()]);
                SecretKey::generate(seed.as_bytes())
            })
            .collect();
        let members: Vec<MemberKey> = secrets.iter().map(MemberKey::from_secret).collect();
        let membership =
            Membership::new(hash(Domain::NetworkId, &[b"wasm bench"]), members.clone())
                .map_err(|e| e.to_string())?;
        let message = b"beaufort vote message: key, value digest, view, round".to_vec();
        let all: Vec<Signer> = secrets
            .into_iter()
            .enumerate()
            .map(|(i, secret)| Signer::new(i as MemberIndex, secret))
            .collect();
        let shares: Vec<(MemberIndex, Signature)> = all[..usize::from(signers)]
            .iter()
            .map(|s| (s.index(), s.sign(&message)))
            .collect();
        let qc =
            QuorumCertificate::aggregate(usize::from(n), &shares).map_err(|e| e.to_string())?;
        let signature = shares[0].1;
        let signer = all.into_iter().next().ok_or("no members")?;
        Ok(BenchFixture {
            members,
            membership,
            signer,
            message,
            signature,
            qc,
        })
    }
}

#[wasm_bindgen]
impl BenchFixture {
    /// See [`BenchFixture::build`]; throws on an impossible committee.
    #[wasm_bindgen(constructor)]
    pub fn new(n: u16, signers: u16) -> Result<BenchFixture, JsError> {
        BenchFixture::build(n, signers).map_err(|e| JsError::new(&e))
    }

    /// Signs a vote message (member 0).
    pub fn sign(&self) -> bool {
        self.signer.sign(&self.message) == self.signature
    }

    /// Verifies one member's vote.
    #[wasm_bindgen(js_name = verifyOne)]
    pub fn verify_one(&self) -> bool {
        self.membership
            .verify_vote(0, &self.message, &self.signature)
    }

    /// Verifies the quorum certificate (aggregate of the signers' votes).
    #[wasm_bindgen(js_name = verifyCertificate)]
    pub fn verify_certificate(&self) -> bool {
        self.membership.verify_qc(&self.qc, &self.message).is_ok()
    }

    /// Loads the membership again: every proof of possession checked (what opening `/verify`
    /// costs per member).
    #[wasm_bindgen(js_name = loadMembers)]
    pub fn load_members(&self) -> bool {
        Membership::new(self.membership.network_id(), self.members.clone()).is_ok()
    }
}

fn js_error(error: ReceiptError) -> JsError {
    JsError::new(&error.to_string())
}

/// [`qr::qr_svg`] for the wallet page: the customer's key as an SVG QR code; throws when the text
/// cannot fit.
#[wasm_bindgen(js_name = qrSvg)]
pub fn qr_svg_js(text: &str) -> Result<String, JsError> {
    qr::qr_svg(text).map_err(|e| JsError::new(&e.to_string()))
}

/// [`qr::decode_qr`] for the dashboard: the text of a QR code in a camera frame or an uploaded
/// picture (canvas RGBA), `undefined` when there is none; throws when one is there but unreadable.
#[wasm_bindgen(js_name = decodeQr)]
pub fn decode_qr_js(rgba: &[u8], width: u32, height: u32) -> Result<Option<String>, JsError> {
    qr::decode_qr(rgba, width, height).map_err(|e| JsError::new(&e.to_string()))
}
