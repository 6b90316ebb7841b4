//! Rules and contracts an application registers next to the built-in ones.

use beaufort_apps::{AppHook, RuleError};
use beaufort_contracts::{builtin, NativeContract, Registry};
use beaufort_core::hook::{AcceptAll, HookError, ValidationHook};
use beaufort_core::types::{Key, Value};
use beaufort_crypto::bls::SecretKey;
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::membership::{MemberKey, Membership};
use std::sync::Arc;

fn hook() -> AppHook {
    let key = MemberKey::from_secret(&SecretKey::generate(&[3; 32]));
    let membership =
        Membership::new(hash(Domain::NetworkId, &[b"rules"]), vec![key]).expect("membership");
    AppHook::new(Arc::new(membership), Arc::new(Registry::new()), &[])
}

fn refuse_all() -> Arc<dyn ValidationHook> {
    Arc::new(|_: &Key, _: Option<&_>, _: &Value| Err(HookError::Rejected("never".into())))
}

#[test]
fn a_rule_decides_for_its_prefix_only() {
    let hook = hook().with_rule("app/", refuse_all()).expect("rule");
    let value = Value::data(b"x".to_vec()).expect("value");
    let mine = Key::new(b"app/1".to_vec()).expect("key");
    let plain = Key::new(b"apple".to_vec()).expect("key");
    assert!(hook.validate(&mine, None, &value).is_err());
    assert!(hook.validate(&plain, None, &value).is_ok());
}

#[test]
fn rules_cannot_take_reserved_or_overlapping_prefixes() {
    assert_eq!(
        hook().with_rule("", refuse_all()).err(),
        Some(RuleError::EmptyPrefix)
    );
    for taken in ["loyalty/", "asset/x", "contract", "a"] {
        let refused = hook().with_rule(taken, Arc::new(AcceptAll));
        assert!(
            matches!(refused, Err(RuleError::Reserved { .. })),
            "{taken}"
        );
    }
    let hook = hook().with_rule("app/", refuse_all()).expect("rule");
    assert!(matches!(
        hook.with_rule("app/sub/", Arc::new(AcceptAll)),
        Err(RuleError::Overlap { .. })
    ));
}

#[test]
fn a_compiled_in_contract_name_is_taken_once() {
    let parcel = || {
        NativeContract::new("parcel")
            .transition(
                "send",
                &["Start"],
                "sent",
                |_, _, _| Ok(()),
                |_, _, _| Ok(serde_json::json!({})),
            )
            .build()
            .expect("machine")
    };
    let registry = Registry::new()
        .with_contract(Arc::new(parcel()))
        .expect("a new name");
    assert!(registry.get("parcel").is_some());
    assert!(registry.with_contract(Arc::new(parcel())).is_err());
    let eshare = NativeContract::new(builtin::ESHARE)
        .transition(
            "x",
            &["Start"],
            "y",
            |_, _, _| Ok(()),
            |_, _, _| Ok(serde_json::json!({})),
        )
        .build()
        .expect("machine");
    assert!(Registry::new().with_contract(Arc::new(eshare)).is_err());
}
