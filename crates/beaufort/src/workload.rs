//! What the demo's shops submit: plain register writes, or eShare asset transitions under the
//! compiled-in contract or under the same contract installed at run time as a script, so the
//! overhead of contracts over plain registers can be measured end to end (SCEW's question).

use anyhow::{anyhow, Context, Result};
use beaufort_contracts::asset::{next_record, transition_challenge, AssetRecord, ASSET_PREFIX};
use beaufort_contracts::install::{ContractPackage, CONTRACT_PREFIX};
use beaufort_contracts::{Contract, ESHARE_SCRIPT};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value, View};
use beaufort_crypto::hash::Digest;
use beaufort_crypto::user::UserKeyPair;
use beaufort_node::NodeHandle;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Name the eShare script is installed under in the demo.
pub const SCRIPT_CONTRACT: &str = "eshare_script";

/// The workload a demo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// Plain key-value writes of customers' balances (no contract).
    Kv,
    /// eShare tools lent and returned under the compiled-in Rust contract.
    Eshare,
    /// The same, under the eShare script installed at run time through endorsements.
    EshareScript,
}

/// One tool a shop lends out.
struct Tool {
    id: String,
    /// Its committed record and view, once registered.
    current: Option<(AssetRecord, View)>,
    /// A transition is in flight.
    busy: bool,
}

/// One member's share of the workload.
pub struct Workload {
    member: usize,
    customers: usize,
    network: Digest,
    contract: Option<Arc<dyn Contract>>,
    owner: UserKeyPair,
    borrower_pk: String,
    tools: Vec<Tool>,
}

impl Workload {
    /// The workload of member `member`, with `customers` balances or tools.
    pub fn new(
        kind: WorkloadKind,
        member: usize,
        customers: usize,
        node: &NodeHandle,
    ) -> Result<Workload> {
        let contract = match kind {
            WorkloadKind::Kv => None,
            WorkloadKind::Eshare => node
                .apps()
                .registry()
                .get(beaufort_contracts::builtin::ESHARE),
            WorkloadKind::EshareScript => node.apps().registry().get(SCRIPT_CONTRACT),
        };
        if kind != WorkloadKind::Kv && contract.is_none() {
            return Err(anyhow!("member {member} cannot run the {kind:?} contract"));
        }
        let borrower = UserKeyPair::generate().map_err(|e| anyhow!("key pair: {e}"))?;
        Ok(Workload {
            member,
            customers,
            network: node.membership().network_id(),
            contract,
            owner: UserKeyPair::generate().map_err(|e| anyhow!("key pair: {e}"))?,
            borrower_pk: hex::encode(borrower.public_key().as_bytes()),
            tools: (0..customers)
                .map(|t| Tool {
                    id: format!("tool-{member}-{t}"),
                    current: None,
                    busy: false,
                })
                .collect(),
        })
    }

    /// The `i`-th write: a key, its value and the tool it moves (none for plain writes). `None`
    /// when the tool whose turn it is still has a transition in flight.
    pub fn next(&mut self, i: usize) -> Result<Option<(Key, Value, Option<usize>)>> {
        let Some(contract) = self.contract.clone() else {
            // Each shop updates its own customers' balances, so writes do not contend.
            let key = Key::new(format!(
                "points/shop-{}/customer-{}",
                self.member,
                i % self.customers
            ))?;
            return Ok(Some((
                key,
                Value::data(format!("{}", i * 10 + self.member).into_bytes())?,
                None,
            )));
        };
        let t = i % self.tools.len();
        let tool = &mut self.tools[t];
        if tool.busy {
            return Ok(None);
        }
        let (transition, input) = match &tool.current {
            None => (
                "register",
                json!({ "tool": format!("Tool {t} of shop {}", self.member) }),
            ),
            Some((record, _)) if record.state.name == "Ready" => {
                ("lend", json!({ "borrower": self.borrower_pk }))
            }
            Some(_) => ("return", json!({})),
        };
        let old = tool.current.as_ref().map(|(r, v)| (r, *v));
        let challenge = transition_challenge(
            &self.network,
            &tool.id,
            old.map(|(_, v)| v),
            contract.name(),
            transition,
            &self.owner.public_key(),
            &input,
        );
        let signature = hex::encode(
            self.owner
                .sign(&challenge)
                .map_err(|e| anyhow!("sign: {e}"))?,
        );
        let record = next_record(
            contract.as_ref(),
            &tool.id,
            old,
            transition,
            input,
            self.owner.public_key(),
            signature,
        )?;
        let key = Key::new(format!("{ASSET_PREFIX}{}", tool.id))?;
        let value = Value::data(serde_json::to_vec(&record)?)?;
        tool.busy = true;
        Ok(Some((key, value, Some(t))))
    }

    /// Records the outcome of a tool's transition.
    pub fn finished(&mut self, tool: usize, outcome: Option<&Certified>) {
        let Some(tool) = self.tools.get_mut(tool) else {
            return;
        };
        tool.busy = false;
        if let Some(certified) = outcome {
            if let Some(record) = certified
                .value
                .as_data()
                .and_then(|b| serde_json::from_slice(b).ok())
            {
                tool.current = Some((record, certified.view));
            }
        }
    }
}

/// Installs the eShare script through consensus: member 0 proposes it with its endorsement, the
/// next members endorse it until a quorum did, and every member compiles it.
pub async fn install_script(nodes: &[NodeHandle]) -> Result<()> {
    let first = nodes.first().context("no members")?;
    let network = first.membership().network_id();
    let key = Key::new(format!("{CONTRACT_PREFIX}{SCRIPT_CONTRACT}"))?;
    let mut package = ContractPackage::propose(
        &network,
        SCRIPT_CONTRACT,
        ESHARE_SCRIPT,
        first.statement_signer(),
    )?;
    first
        .set(key.clone(), Value::data(serde_json::to_vec(&package)?)?)
        .await?;
    for node in nodes
        .iter()
        .skip(1)
        .take(first.membership().quorum().saturating_sub(1))
    {
        package.endorse(&network, node.statement_signer());
        node.set(key.clone(), Value::data(serde_json::to_vec(&package)?)?)
            .await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while nodes
        .iter()
        .any(|n| n.apps().registry().get(SCRIPT_CONTRACT).is_none())
    {
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!(
                "the script contract did not install at every member within 60 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
