//! End-to-end use of the public API, the way the protocol core and the tools use it.

use beaufort_crypto::batch::{verify_batch, BatchItem, BatchOutcome};
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::{
    CryptoError, MemberIndex, MemberKey, Membership, ProofOfPossession, PublicKey,
    QuorumCertificate, SecretKey, Signature, Signer, SignerSet, SignerWeights, VOTE_DST,
};
use std::sync::Arc;

fn secret(i: usize) -> SecretKey {
    SecretKey::generate(hash(Domain::Other, &[b"api test", &(i as u64).to_le_bytes()]).as_bytes())
}

#[test]
fn configuration_votes_batch_and_certificate() {
    let n = 7;
    // The configuration as an operator would write it: JSON member entries.
    let entries: Vec<MemberKey> = (0..n).map(|i| MemberKey::from_secret(&secret(i))).collect();
    let config = serde_json::to_string_pretty(&entries).unwrap();
    let parsed: Vec<MemberKey> = serde_json::from_str(&config).unwrap();
    let network = hash(Domain::NetworkId, &[b"loyalty points"]);
    let membership = Membership::new(network, parsed).unwrap();
    assert_eq!(membership.network_id(), network);
    assert_eq!(membership.quorum(), 5);

    let signers: Vec<Signer> = (0..n)
        .map(|i| Signer::new(i as MemberIndex, secret(i)))
        .collect();
    for (i, signer) in signers.iter().enumerate() {
        assert_eq!(
            Some(signer.public_key()),
            membership.public_key(i as MemberIndex)
        );
    }

    // Votes arrive unverified over the wire (postcard) and are batch-verified before deciding.
    let message: Arc<[u8]> = Arc::from(&b"commit key=k value=#1234 view=0"[..]);
    let wire: Vec<Vec<u8>> = signers
        .iter()
        .map(|s| postcard::to_allocvec(&s.sign(&message)).unwrap())
        .collect();
    let items: Vec<BatchItem> = wire
        .iter()
        .enumerate()
        .map(|(i, bytes)| BatchItem {
            signer: i as MemberIndex,
            message: message.clone(),
            signature: postcard::from_bytes(bytes).unwrap(),
        })
        .collect();
    assert_eq!(
        verify_batch(&membership, &items, [42; 32]),
        BatchOutcome::AllValid
    );

    // Any replica aggregates a quorum of them into a certificate that travels compactly.
    let shares: Vec<(MemberIndex, Signature)> = items[2..7]
        .iter()
        .map(|it| (it.signer, it.signature))
        .collect();
    let qc = QuorumCertificate::aggregate(n, &shares).unwrap();
    let bytes = postcard::to_allocvec(&qc).unwrap();
    // Signer form, n, bitmap length, one bitmap byte, no repeats, the signature.
    assert_eq!(bytes.len(), 1 + 1 + 1 + 1 + 1 + 48);
    let received: QuorumCertificate = postcard::from_bytes(&bytes).unwrap();
    membership.verify_qc(&received, &message).unwrap();

    // Claiming a different signer set with the same signature fails.
    let mut forged = received.clone();
    let mut set = SignerSet::new(n).unwrap();
    for i in [0, 1, 2, 3, 4] {
        set.insert(i).unwrap();
    }
    forged.signers = SignerWeights::from_signers(&set).unwrap();
    assert!(matches!(
        membership.verify_qc(&forged, &message),
        Err(CryptoError::InvalidAggregate)
    ));
}

/// The classic rogue-key attack: the attacker publishes `pk_r = x*g2 - pk_a`, so the plain sum
/// `pk_a + pk_r = x*g2` lets it forge "both signed" with `x*H(m)`. It cannot produce a proof of
/// possession for `pk_r`, so the membership refuses it.
#[test]
fn rogue_key_is_rejected() {
    use blst::min_sig::{AggregatePublicKey, PublicKey as BlstPk, SecretKey as BlstSk};

    let honest = secret(1);
    let honest_pk = honest.public_key();
    let x = BlstSk::key_gen(&[77; 32], &[]).unwrap();
    let xg2 = x.sk_to_pk();
    // Negate pk_a by flipping the sign flag of its compressed encoding.
    let mut neg = *honest_pk.as_bytes();
    neg[0] ^= 0x20;
    let neg_pk_a = BlstPk::from_bytes(&neg).unwrap();
    let rogue = AggregatePublicKey::aggregate(&[&xg2, &neg_pk_a], false)
        .unwrap()
        .to_public_key();
    let rogue_pk = PublicKey::from_bytes(&rogue.compress()).unwrap();

    // The attack works against naive aggregation without proofs of possession or coefficients.
    let sum = AggregatePublicKey::aggregate(
        &[&BlstPk::from_bytes(honest_pk.as_bytes()).unwrap(), &rogue],
        false,
    )
    .unwrap()
    .to_public_key();
    let forged = x.sign(b"m", VOTE_DST, &[]);
    assert_eq!(
        forged.verify(true, b"m", VOTE_DST, &[], &sum, false),
        blst::BLST_ERROR::BLST_SUCCESS
    );

    // The best "proof" the attacker can make is a signature with x, which does not verify.
    let fake_pop = x.sign(rogue_pk.as_bytes(), beaufort_crypto::bls::POP_DST, &[]);
    let members = vec![
        MemberKey::from_secret(&honest),
        MemberKey {
            public_key: rogue_pk,
            pop: ProofOfPossession::from_signature(
                Signature::from_bytes(&fake_pop.compress()).unwrap(),
            ),
        },
    ];
    assert!(matches!(
        Membership::new(hash(Domain::NetworkId, &[b"n"]), members),
        Err(CryptoError::ProofOfPossessionFailed { index: 1 })
    ));
}
