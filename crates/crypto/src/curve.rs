//! The only place that calls blst's C functions directly. Everything here is a thin, safe wrapper
//! over one FFI call on values owned by Rust, so the rest of the crate contains no `unsafe`.
//!
//! BLS12-381 in the "min_sig" arrangement: signatures and message hashes live in G1, public keys in
//! G2.

use crate::hash::{hash_xof, Domain};
use blst::{blst_p1, blst_p1_affine, blst_p2, blst_p2_affine, blst_scalar, Pairing, BLST_ERROR};

/// Compressed size of a G1 point (a signature).
pub(crate) const G1_LEN: usize = 48;
/// Compressed size of a G2 point (a public key).
pub(crate) const G2_LEN: usize = 96;

/// Derives a secret scalar from 32 bytes of key material (IETF KeyGen).
pub(crate) fn keygen(ikm: &[u8; 32]) -> blst_scalar {
    let mut sk = blst_scalar::default();
    // SAFETY: `sk` is a valid out-pointer; `ikm` is a valid buffer of the given length; a null
    // `info` with length 0 is allowed by blst.
    unsafe { blst::blst_keygen(&mut sk, ikm.as_ptr(), ikm.len(), std::ptr::null(), 0) };
    sk
}

/// Parses a big-endian secret scalar; `None` unless it is in `1..r`.
pub(crate) fn scalar_from_be(bytes: &[u8; 32]) -> Option<blst_scalar> {
    let mut sk = blst_scalar::default();
    // SAFETY: `bytes` holds the 32 bytes blst reads; `sk` is a valid out-pointer.
    let ok = unsafe {
        blst::blst_scalar_from_bendian(&mut sk, bytes.as_ptr());
        blst::blst_sk_check(&sk)
    };
    ok.then_some(sk)
}

/// Big-endian encoding of a scalar.
pub(crate) fn scalar_to_be(sk: &blst_scalar) -> [u8; 32] {
    let mut out = [0u8; 32];
    // SAFETY: `out` has the 32 bytes blst writes.
    unsafe { blst::blst_bendian_from_scalar(out.as_mut_ptr(), sk) };
    out
}

/// The BLS coefficient t = H1(pk): 64 bytes of domain-separated BLAKE3 output reduced modulo the
/// group order (the extra 256 bits make the modular bias negligible). A zero result, which has
/// probability 2^-255, is replaced by 1 so that t is always invertible.
pub(crate) fn coefficient(public_key: &[u8; G2_LEN]) -> blst_scalar {
    let wide = hash_xof::<64>(Domain::BlsCoefficient, &[public_key]);
    let mut t = blst_scalar::default();
    // SAFETY: `wide` is a valid buffer of the given length; `t` is a valid out-pointer.
    let non_zero = unsafe { blst::blst_scalar_from_be_bytes(&mut t, wide.as_ptr(), wide.len()) };
    if !non_zero {
        t = blst_scalar::default();
        t.b[0] = 1;
    }
    t
}

/// `a * b mod r`. Both factors are non-zero modulo the prime r, so the product is too.
pub(crate) fn scalar_mul(a: &blst_scalar, b: &blst_scalar) -> blst_scalar {
    let mut out = blst_scalar::default();
    // SAFETY: all pointers are to valid scalars. The "check" result only reports a zero product,
    // impossible for non-zero factors modulo a prime.
    unsafe { blst::blst_sk_mul_n_check(&mut out, a, b) };
    out
}

/// The public key `sk * g2`, compressed.
pub(crate) fn public_key_of(sk: &blst_scalar) -> [u8; G2_LEN] {
    let mut pk = blst_p2::default();
    let mut out = [0u8; G2_LEN];
    // SAFETY: valid out-pointers; `out` has the 96 bytes blst writes.
    unsafe {
        blst::blst_sk_to_pk_in_g2(&mut pk, sk);
        blst::blst_p2_compress(out.as_mut_ptr(), &pk);
    }
    out
}

/// `sk * H0(msg)` under `dst`, compressed.
pub(crate) fn sign(sk: &blst_scalar, msg: &[u8], dst: &[u8]) -> [u8; G1_LEN] {
    let mut hashed = blst_p1::default();
    let mut sig = blst_p1::default();
    let mut out = [0u8; G1_LEN];
    // SAFETY: valid buffers with their lengths; a null `aug` with length 0 is allowed; `out` has
    // the 48 bytes blst writes.
    unsafe {
        blst::blst_hash_to_g1(
            &mut hashed,
            msg.as_ptr(),
            msg.len(),
            dst.as_ptr(),
            dst.len(),
            std::ptr::null(),
            0,
        );
        blst::blst_sign_pk_in_g2(&mut sig, &hashed, sk);
        blst::blst_p1_compress(out.as_mut_ptr(), &sig);
    }
    out
}

/// Decompresses a G2 point and checks it is not the identity and lies in the prime-order subgroup.
pub(crate) fn g2_from_bytes(bytes: &[u8; G2_LEN]) -> Result<blst_p2_affine, &'static str> {
    let mut point = blst_p2_affine::default();
    // SAFETY: `bytes` has the 96 bytes blst reads; `point` is a valid out-pointer.
    let err = unsafe { blst::blst_p2_uncompress(&mut point, bytes.as_ptr()) };
    if err != BLST_ERROR::BLST_SUCCESS {
        return Err("not a compressed point on the curve");
    }
    // SAFETY: `point` is an initialised affine point.
    if unsafe { blst::blst_p2_affine_is_inf(&point) } {
        return Err("the identity is not a public key");
    }
    // SAFETY: as above.
    if !unsafe { blst::blst_p2_affine_in_g2(&point) } {
        return Err("point is not in the prime-order subgroup");
    }
    Ok(point)
}

/// Decompresses a G1 point and checks it is on the curve and not the identity. The subgroup check
/// is left to the pairing check, which does it once per aggregate instead of once per signature.
pub(crate) fn g1_from_bytes(bytes: &[u8; G1_LEN]) -> Result<blst_p1_affine, &'static str> {
    let mut point = blst_p1_affine::default();
    // SAFETY: `bytes` has the 48 bytes blst reads; `point` is a valid out-pointer.
    let err = unsafe { blst::blst_p1_uncompress(&mut point, bytes.as_ptr()) };
    if err != BLST_ERROR::BLST_SUCCESS {
        return Err("not a compressed point on the curve");
    }
    // SAFETY: `point` is an initialised affine point.
    if unsafe { blst::blst_p1_affine_is_inf(&point) } {
        return Err("the identity is not a signature");
    }
    Ok(point)
}

/// `t * point` for a G2 point (used once per member, when a membership is loaded).
pub(crate) fn g2_mul(point: &blst_p2_affine, t: &blst_scalar) -> blst_p2_affine {
    let mut projective = blst_p2::default();
    let mut product = blst_p2::default();
    let mut out = blst_p2_affine::default();
    // SAFETY: valid in/out pointers; `t.b` holds the 32 little-endian bytes of which blst reads 255
    // bits.
    unsafe {
        blst::blst_p2_from_affine(&mut projective, point);
        blst::blst_p2_mult(&mut product, &projective, t.b.as_ptr(), 255);
        blst::blst_p2_to_affine(&mut out, &product);
    }
    out
}

/// `count * point` for a G2 point and a small count: an 8-bit scalar multiplication, so the
/// largest count costs a handful of doublings.
pub(crate) fn g2_mul_small(point: &blst_p2_affine, count: u8) -> blst_p2_affine {
    let mut projective = blst_p2::default();
    let mut product = blst_p2::default();
    let mut out = blst_p2_affine::default();
    let scalar = [count];
    // SAFETY: valid in/out pointers; `scalar` holds the one little-endian byte blst reads for 8
    // bits.
    unsafe {
        blst::blst_p2_from_affine(&mut projective, point);
        blst::blst_p2_mult(&mut product, &projective, scalar.as_ptr(), 8);
        blst::blst_p2_to_affine(&mut out, &product);
    }
    out
}

/// A running sum of G1 points (signatures).
#[derive(Default)]
pub(crate) struct G1Sum(blst_p1);

impl G1Sum {
    /// Adds one point.
    pub(crate) fn add(&mut self, point: &blst_p1_affine) {
        let sum: *mut blst_p1 = &mut self.0;
        // SAFETY: valid pointers; blst allows `out` to alias the first input.
        unsafe { blst::blst_p1_add_or_double_affine(sum, sum, point) };
    }

    /// The sum as an affine point.
    pub(crate) fn to_affine(&self) -> blst_p1_affine {
        let mut out = blst_p1_affine::default();
        // SAFETY: valid pointers.
        unsafe { blst::blst_p1_to_affine(&mut out, &self.0) };
        out
    }

    /// Whether the sum is the identity (the point at infinity), which is no signature.
    pub(crate) fn is_identity(&self) -> bool {
        // SAFETY: valid pointer.
        unsafe { blst::blst_p1_is_inf(&self.0) }
    }

    /// Whether the sum lies in the prime-order subgroup G1.
    pub(crate) fn in_group(&self) -> bool {
        // SAFETY: valid pointer.
        unsafe { blst::blst_p1_in_g1(&self.0) }
    }

    /// The compressed sum.
    pub(crate) fn compress(&self) -> [u8; G1_LEN] {
        let mut out = [0u8; G1_LEN];
        // SAFETY: `out` has the 48 bytes blst writes.
        unsafe { blst::blst_p1_compress(out.as_mut_ptr(), &self.0) };
        out
    }
}

/// A running sum of G2 points (effective public keys).
#[derive(Default)]
pub(crate) struct G2Sum(blst_p2);

impl G2Sum {
    /// Adds one point.
    pub(crate) fn add(&mut self, point: &blst_p2_affine) {
        let sum: *mut blst_p2 = &mut self.0;
        // SAFETY: valid pointers; blst allows `out` to alias the first input.
        unsafe { blst::blst_p2_add_or_double_affine(sum, sum, point) };
    }

    /// The sum as an affine point.
    pub(crate) fn to_affine(&self) -> blst_p2_affine {
        let mut out = blst_p2_affine::default();
        // SAFETY: valid pointers.
        unsafe { blst::blst_p2_to_affine(&mut out, &self.0) };
        out
    }
}

/// One term of a pairing check: `e(public_key, r * H0(message)) == e(g2, r * signature)` summed
/// over all terms, with an optional 64-bit random multiplier `r`.
pub(crate) struct Term<'a> {
    pub(crate) public_key: blst_p2_affine,
    pub(crate) signature: blst_p1_affine,
    pub(crate) message: &'a [u8],
    pub(crate) randomizer: Option<[u8; 8]>,
}

/// Checks `prod_i e(pk_i, r_i * H0(m_i)) == e(g2, sum_i r_i * sig_i)` with one final
/// exponentiation. Each signature term is checked to lie in G1. Public keys are trusted (they were
/// validated when the membership was built).
pub(crate) fn pairing_check(terms: &[Term<'_>], dst: &[u8]) -> bool {
    if terms.is_empty() {
        return false;
    }
    let mut pairing = Pairing::new(true, dst);
    for term in terms {
        let err = match &term.randomizer {
            Some(r) => pairing.mul_n_aggregate(
                &term.public_key,
                false,
                &term.signature,
                true,
                r,
                64,
                term.message,
                &[],
            ),
            None => pairing.aggregate(
                &term.public_key,
                false,
                &term.signature,
                true,
                term.message,
                &[],
            ),
        };
        if err != BLST_ERROR::BLST_SUCCESS {
            return false;
        }
    }
    pairing.commit();
    pairing.finalverify(None)
}
