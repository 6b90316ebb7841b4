//! What `beaufort demo --serve` leaves for people to look at: the measured workload writes plain
//! keys or anonymous tool hand-overs, so without this the wallet showed 0 points and the pages
//! little else. After the workload, the demo stages a small living consortium through the same
//! signed steps the pages and the API take: three customers with tickets issued and redeemed at
//! different shops, neighbours lending tools (one lent out, one returned, one broken) and invoices
//! pledged as collateral (one free, one pledged, one released).
//!
//! A visitor's own wallet starts empty (its key is made in their browser), so the demo also writes
//! the first customer's wallet in the format of the wallet's "Export" (PBKDF2-SHA-256 and
//! AES-256-GCM, crates/node/web/common.js) and prints an import link with its passphrase: opening
//! it shows that customer's points, and they can be redeemed at any shop.

use anyhow::{anyhow, bail, Context, Result};
use beaufort_apps::loyalty::{self, Redemption, TicketRecord, TICKET_PREFIX};
use beaufort_contracts::asset::{next_record, transition_challenge, AssetRecord, ASSET_PREFIX};
use beaufort_contracts::builtin::{invoice_asset_id, ELOAN, ESHARE};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value, View};
use beaufort_crypto::user::UserPublicKey;
use beaufort_node::NodeHandle;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value as Json};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// The passphrase of the demo customer's exported wallet, printed with its link. Public on
/// purpose: the demo's keys protect nothing.
pub const WALLET_PASSPHRASE: &str = "beaufort demo wallet";
/// PBKDF2 rounds of the export, as the wallet page uses for its own exports.
const WALLET_ITERATIONS: u32 = 600_000;
/// How long a member may take to learn of a step committed at another member.
const SYNC_DEADLINE: Duration = Duration::from_secs(30);

/// What the showcase staged, for the demo to print.
pub struct Showcase {
    /// The first customer's name.
    pub customer: &'static str,
    /// Their wallet as the page exports it (JSON), to open with [`WALLET_PASSPHRASE`].
    pub exported_wallet: String,
    /// Points left in their wallet.
    pub balance: u64,
    /// Their tickets.
    pub customer_tickets: usize,
    /// A ticket key, for the printed CLI example.
    pub ticket_key: String,
    /// Tickets staged.
    pub tickets: usize,
    /// Tools staged.
    pub tools: usize,
    /// Invoices staged.
    pub invoices: usize,
}

/// A customer as a browser holds one: a P-256 key pair whose PKCS #8 document is kept so the
/// wallet can be exported the way the page exports it.
struct Customer {
    name: &'static str,
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
    public_key: UserPublicKey,
}

impl Customer {
    fn new(name: &'static str, rng: &SystemRandom) -> Result<Customer> {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng)
            .map_err(|_| anyhow!("no randomness for a key pair"))?;
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng)
            .map_err(|_| anyhow!("ring refused its own key pair"))?;
        let public_key = UserPublicKey::from_bytes(pair.public_key().as_ref())
            .map_err(|e| anyhow!("public key: {e}"))?;
        Ok(Customer {
            name,
            pkcs8: pkcs8.as_ref().to_vec(),
            pair,
            public_key,
        })
    }

    fn pk_hex(&self) -> String {
        hex::encode(self.public_key.as_bytes())
    }

    /// Signs as WebCrypto does (`r || s`), hex.
    fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<String> {
        let signature = self
            .pair
            .sign(rng, message)
            .map_err(|_| anyhow!("signing failed"))?;
        Ok(hex::encode(signature.as_ref()))
    }

    /// The wallet as the page's "Export" writes it, under `passphrase`.
    fn export(&self, passphrase: &str, rng: &SystemRandom) -> Result<String> {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 12];
        rng.fill(&mut salt)
            .and_then(|()| rng.fill(&mut iv))
            .map_err(|_| anyhow!("no randomness for the export"))?;
        let rounds = NonZeroU32::new(WALLET_ITERATIONS).context("PBKDF2 rounds")?;
        let mut key = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            passphrase.as_bytes(),
            &mut key,
        );
        let aes = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key)
                .map_err(|_| anyhow!("AES key"))?,
        );
        let pk = self.pk_hex();
        let mut sealed = self.pkcs8.clone();
        aes.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(iv),
            ring::aead::Aad::from(pk.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| anyhow!("AES-GCM"))?;
        Ok(json!({
            "format": "beaufort-wallet-1",
            "public_key": pk,
            "kdf": { "name": "PBKDF2", "hash": "SHA-256", "iterations": WALLET_ITERATIONS, "salt": hex::encode(salt) },
            "cipher": { "name": "AES-GCM", "iv": hex::encode(iv) },
            "ciphertext": hex::encode(sealed),
        })
        .to_string())
    }
}

/// Waits until `node` holds `key` certified in at least `view` (a step committed at another
/// member reaches it by gossip), and returns what it holds.
async fn synced(node: &NodeHandle, key: &Key, view: View) -> Result<Certified> {
    let deadline = Instant::now() + SYNC_DEADLINE;
    loop {
        if let Some(certified) = node.get(key.clone()).await? {
            if certified.view >= view {
                return Ok(certified);
            }
        }
        if Instant::now() > deadline {
            bail!("member did not learn of a committed step within {SYNC_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn commit_json(node: &NodeHandle, key: Key, value: &impl serde::Serialize) -> Result<View> {
    let certified = node
        .set(key, Value::data(serde_json::to_vec(value)?)?)
        .await?;
    Ok(certified.view)
}

/// Issues `points` to `customer` at `shop`; the ticket's key and view.
async fn issue(
    nodes: &[NodeHandle],
    shop: usize,
    customer: &Customer,
    points: u64,
    rng: &SystemRandom,
) -> Result<(String, Key, View)> {
    let node = &nodes[shop % nodes.len()];
    let mut id = [0u8; 16];
    rng.fill(&mut id).map_err(|_| anyhow!("no randomness"))?;
    let id = hex::encode(id);
    let record = loyalty::issue(
        &node.membership().network_id(),
        node.statement_signer(),
        &id,
        customer.public_key,
        points,
    )?;
    let key = Key::new(format!("{TICKET_PREFIX}{id}"))?;
    let view = commit_json(node, key.clone(), &record).await?;
    Ok((id, key, view))
}

/// Redeems `amount` points of the ticket at `shop`, signed by its owner, once that shop's member
/// holds the ticket; the view of the redeemed ticket.
async fn redeem(
    nodes: &[NodeHandle],
    shop: usize,
    key: &Key,
    view: View,
    owner: &Customer,
    amount: u64,
    rng: &SystemRandom,
) -> Result<View> {
    let node = &nodes[shop % nodes.len()];
    let current = synced(node, key, view).await?;
    let old: TicketRecord = serde_json::from_slice(current.value.as_data().context("a ticket")?)?;
    let network = node.membership().network_id();
    let merchant = node.statement_signer().index();
    let challenge =
        loyalty::redeem_challenge(&network, &old.id, current.view, merchant, amount, None);
    let record = loyalty::redeem(
        &network,
        &old,
        Redemption {
            view: current.view,
            merchant,
            amount,
            signature: owner.sign(&challenge, rng)?,
            request_id: None,
        },
    )?;
    commit_json(node, key.clone(), &record).await
}

/// Runs `steps` (transition, input, actor) on one asset at `node`, each signed by its actor.
async fn asset_steps(
    node: &NodeHandle,
    contract: &str,
    id: &str,
    steps: &[(&str, Json, &Customer)],
    rng: &SystemRandom,
) -> Result<()> {
    let contract = node
        .apps()
        .registry()
        .get(contract)
        .with_context(|| format!("no {contract} contract"))?;
    let network = node.membership().network_id();
    let key = Key::new(format!("{ASSET_PREFIX}{id}"))?;
    let mut current: Option<(AssetRecord, View)> = None;
    for (transition, input, actor) in steps {
        let old = current.as_ref().map(|(r, v)| (r, *v));
        let challenge = transition_challenge(
            &network,
            id,
            old.map(|(_, v)| v),
            contract.name(),
            transition,
            &actor.public_key,
            input,
        );
        let record = next_record(
            contract.as_ref(),
            id,
            old,
            transition,
            input.clone(),
            actor.public_key,
            actor.sign(&challenge, rng)?,
        )?;
        let view = commit_json(node, key.clone(), &record).await?;
        current = Some((record, view));
    }
    Ok(())
}

/// Stages the loyalty programme, the tool share and the loans at `nodes`.
pub async fn stage(nodes: &[NodeHandle]) -> Result<Showcase> {
    let rng = SystemRandom::new();
    let alice = Customer::new("Alice", &rng)?;
    let bob = Customer::new("Bob", &rng)?;
    let carol = Customer::new("Carol", &rng)?;
    let last = nodes.len().saturating_sub(1);

    // Loyalty: tickets from several shops, some spent at others.
    let (ticket, a1, a1_view) = issue(nodes, 0, &alice, 120, &rng).await?;
    let (_, a2, a2_view) = issue(nodes, 1, &alice, 80, &rng).await?;
    let a2_view = redeem(nodes, 2, &a2, a2_view, &alice, 30, &rng).await?;
    let (_, a3, a3_view) = issue(nodes, last, &alice, 45, &rng).await?;
    let (_, b1, b1_view) = issue(nodes, 1, &bob, 200, &rng).await?;
    redeem(nodes, 0, &b1, b1_view, &bob, 200, &rng).await?;
    issue(nodes, 2, &carol, 60, &rng).await?;
    let tickets = 5;
    let alice_balance = 120 + (80 - 30) + 45;

    // eShare: one tool lent out, one back from a borrower, one broken.
    let tools = [
        (
            "ladder-demo",
            vec![
                ("register", json!({ "tool": "Ladder, 3 m" }), &alice),
                ("lend", json!({ "borrower": bob.pk_hex() }), &alice),
            ],
        ),
        (
            "hammer-drill-demo",
            vec![
                ("register", json!({ "tool": "Hammer drill" }), &alice),
                ("lend", json!({ "borrower": carol.pk_hex() }), &alice),
                ("return", json!({}), &alice),
            ],
        ),
        (
            "lawn-mower-demo",
            vec![("register", json!({ "tool": "Lawn mower" }), &bob)],
        ),
        (
            "pressure-washer-demo",
            vec![
                ("register", json!({ "tool": "Pressure washer" }), &carol),
                ("lend", json!({ "borrower": alice.pk_hex() }), &carol),
                ("return", json!({}), &carol),
                ("report_broken", json!({ "note": "the pump leaks" }), &alice),
            ],
        ),
    ];
    for (i, (id, steps)) in tools.iter().enumerate() {
        asset_steps(&nodes[i % nodes.len()], ESHARE, id, steps, &rng).await?;
    }

    // eLoan: Bob's bakery supplies cafés and borrows against its invoices from Carol.
    let invoice = |number: &str, debtor: &str, amount: u64| {
        (
            invoice_asset_id("BE0123.456.789", number),
            json!({ "supplier_id": "BE0123.456.789", "number": number, "debtor": debtor, "amount": amount }),
        )
    };
    let (free_id, free) = invoice("2026-0108", "Café Central", 960);
    let (pledged_id, pledged) = invoice("2026-0107", "Hotel Astoria", 4800);
    let (released_id, released) = invoice("2026-0099", "Café Central", 1250);
    let lender = json!({ "lender": carol.pk_hex() });
    let invoices = [
        (free_id, vec![("register", free, &bob)]),
        (
            pledged_id,
            vec![
                ("register", pledged, &bob),
                ("pledge", lender.clone(), &bob),
            ],
        ),
        (
            released_id,
            vec![
                ("register", released, &bob),
                ("pledge", lender, &bob),
                ("release", json!({}), &carol),
            ],
        ),
    ];
    for (i, (id, steps)) in invoices.iter().enumerate() {
        asset_steps(&nodes[(i + 1) % nodes.len()], ELOAN, id, steps, &rng).await?;
    }
    // The printed link opens the wallet at member 0: wait until it holds Alice's tickets as they
    // now are, so the page shows her balance at once.
    for (key, view) in [(&a1, a1_view), (&a2, a2_view), (&a3, a3_view)] {
        synced(&nodes[0], key, view).await?;
    }

    Ok(Showcase {
        customer: alice.name,
        exported_wallet: alice.export(WALLET_PASSPHRASE, &rng)?,
        balance: alice_balance,
        customer_tickets: 3,
        ticket_key: format!("{TICKET_PREFIX}{ticket}"),
        tickets,
        tools: tools.len(),
        invoices: invoices.len(),
    })
}
