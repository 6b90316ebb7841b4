//! The contracts every member has compiled in: eShare (a neighbourhood's shared tools) and eLoan
//! (an invoice pledged as collateral once).

use crate::machine::{State, TransitionContext};
use crate::native::NativeContract;
use serde_json::{json, Value as Json};

/// Name of the eShare contract.
pub const ESHARE: &str = "eshare";
/// Name of the eLoan contract.
pub const ELOAN: &str = "eloan";

/// Longest free-text field (tool name, note, invoice number).
const MAX_TEXT: usize = 200;

fn text<'a>(input: &'a Json, field: &str) -> Result<&'a str, String> {
    match input.get(field).and_then(Json::as_str) {
        Some(s) if !s.trim().is_empty() && s.len() <= MAX_TEXT => Ok(s),
        _ => Err(format!(
            "input.{field} must be a text of 1 to {MAX_TEXT} bytes"
        )),
    }
}

/// A user's public key given in the input: 130 lowercase hex digits of an uncompressed point.
fn user_key<'a>(input: &'a Json, field: &str) -> Result<&'a str, String> {
    match input.get(field).and_then(Json::as_str) {
        Some(s)
            if s.len() == 130
                && s.starts_with("04")
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(s)
        }
        _ => Err(format!(
            "input.{field} must be a P-256 public key (130 lowercase hex digits)"
        )),
    }
}

fn field<'a>(state: &'a State, name: &str) -> &'a Json {
    state.value.get(name).unwrap_or(&Json::Null)
}

fn is(state: &State, name: &str, actor: &str) -> bool {
    field(state, name).as_str() == Some(actor)
}

fn with(state: &State, changes: &[(&str, Json)]) -> Result<Json, String> {
    let mut value = state.value.clone();
    let map = value
        .as_object_mut()
        .ok_or_else(|| "the asset's data is not an object".to_owned())?;
    for (k, v) in changes {
        map.insert((*k).to_owned(), v.clone());
    }
    Ok(value)
}

fn owner_only(state: &State, _: &Json, ctx: &TransitionContext) -> Result<(), String> {
    if is(state, "owner", &ctx.actor) {
        Ok(())
    } else {
        Err("only the tool's owner may do this".into())
    }
}

/// eShare: Start → Ready (register), Ready → Offered (lend, owner), Offered → Ready (return,
/// the owner confirms it is back), Ready → Broken (report_broken, the owner or the last
/// borrower, who is the one likely to notice).
pub fn eshare() -> NativeContract {
    NativeContract::new(ESHARE)
        .transition(
            "register",
            &["Start"],
            "Ready",
            |_, input, _| text(input, "tool").map(drop),
            |_, input, ctx| {
                Ok(json!({ "tool": text(input, "tool")?, "owner": ctx.actor,
                    "borrower": null, "last_borrower": null }))
            },
        )
        .transition(
            "lend",
            &["Ready"],
            "Offered",
            |state, input, ctx| {
                owner_only(state, input, ctx)?;
                if user_key(input, "borrower")? == ctx.actor {
                    return Err("the owner cannot lend a tool to themselves".into());
                }
                Ok(())
            },
            |state, input, _| with(state, &[("borrower", json!(user_key(input, "borrower")?))]),
        )
        .transition(
            "return",
            &["Offered"],
            "Ready",
            owner_only,
            |state, _, _| {
                let borrower = field(state, "borrower").clone();
                with(
                    state,
                    &[("borrower", Json::Null), ("last_borrower", borrower)],
                )
            },
        )
        .transition(
            "report_broken",
            &["Ready"],
            "Broken",
            |state, input, ctx| {
                text(input, "note")?;
                if is(state, "owner", &ctx.actor) || is(state, "last_borrower", &ctx.actor) {
                    Ok(())
                } else {
                    Err("only the owner or the last borrower may report the tool broken".into())
                }
            },
            |state, input, ctx| {
                with(
                    state,
                    &[
                        ("note", json!(text(input, "note")?)),
                        ("reported_by", json!(ctx.actor)),
                    ],
                )
            },
        )
        .build()
        .unwrap_or_else(|e| unreachable!("the eShare machine is well-formed: {e}"))
}

/// The asset id an invoice must live under: one register per (supplier, invoice number), so the
/// same invoice cannot be registered twice and pledged to two lenders.
pub fn invoice_asset_id(supplier_id: &str, number: &str) -> String {
    format!("invoice-{}-{}", slug(supplier_id), slug(number))
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// eLoan: Start → Issued (register, by the supplier, under the invoice's own asset id),
/// Issued → Pledged (pledge to a lender, supplier only), Pledged → Released (the lender releases
/// it once repaid). Released is final: an invoice serves as collateral once.
pub fn eloan() -> NativeContract {
    NativeContract::new(ELOAN)
        .transition(
            "register",
            &["Start"],
            "Issued",
            |_, input, ctx| {
                let id = invoice_asset_id(text(input, "supplier_id")?, text(input, "number")?);
                text(input, "debtor")?;
                match input.get("amount").and_then(Json::as_u64) {
                    Some(a) if a > 0 => {}
                    _ => return Err("input.amount must be a positive whole number".into()),
                }
                if ctx.asset == id {
                    Ok(())
                } else {
                    Err(format!("this invoice must be registered as asset {id}"))
                }
            },
            |_, input, ctx| {
                Ok(json!({ "supplier_id": text(input, "supplier_id")?,
                    "number": text(input, "number")?, "debtor": text(input, "debtor")?,
                    "amount": input.get("amount").cloned().unwrap_or(Json::Null),
                    "supplier": ctx.actor, "lender": null }))
            },
        )
        .transition(
            "pledge",
            &["Issued"],
            "Pledged",
            |state, input, ctx| {
                user_key(input, "lender")?;
                if is(state, "supplier", &ctx.actor) {
                    Ok(())
                } else {
                    Err("only the supplier may pledge the invoice".into())
                }
            },
            |state, input, _| with(state, &[("lender", json!(user_key(input, "lender")?))]),
        )
        .transition(
            "release",
            &["Pledged"],
            "Released",
            |state, _, ctx| {
                if is(state, "lender", &ctx.actor) {
                    Ok(())
                } else {
                    Err("only the lender may release the pledge".into())
                }
            },
            |state, _, _| Ok(state.value.clone()),
        )
        .build()
        .unwrap_or_else(|e| unreachable!("the eLoan machine is well-formed: {e}"))
}
