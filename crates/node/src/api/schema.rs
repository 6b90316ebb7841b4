//! Schemas of the types the API shows that belong to the libraries below the node (keys,
//! signatures, certificates, ticket steps, contract states): those crates stay free of the HTTP
//! layer, so their serde form is described here, once, and the API contract test checks real
//! answers against these descriptions.

use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};

fn string(pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
}

fn integer(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .description(Some(description))
}

/// A customer's P-256 public key: the uncompressed SEC1 point in lowercase hex, as WebCrypto's
/// `exportKey("raw")` gives it.
pub(crate) fn user_key() -> Schema {
    string(
        "^04[0-9a-f]{128}$",
        "P-256 public key, uncompressed SEC1 point in lowercase hex (WebCrypto exportKey raw)",
    )
    .build()
    .into()
}

/// An ECDSA P-256 signature as the API takes it: `r || s` in hex.
pub(crate) fn user_signature() -> Schema {
    string(
        "^[0-9a-fA-F]{128}$",
        "ECDSA P-256 SHA-256 signature r||s in hex (WebCrypto sign) of challenge_hex's bytes",
    )
    .build()
    .into()
}

fn bls_signature() -> ObjectBuilder {
    string(
        "^[0-9a-f]{96}$",
        "BLS12-381 signature (G1, compressed) in hex",
    )
}

/// The members counted more than once in a certificate (every count is 1 unless pieces that
/// overlapped were added into it).
fn repeats() -> ArrayBuilder {
    ArrayBuilder::new().items(
        ObjectBuilder::new()
            .property("member", integer("A member index"))
            .required("member")
            .property(
                "count",
                integer("How many times its share is in the aggregate (2 to 255)")
                    .maximum(Some(255)),
            )
            .required("count"),
    )
}

/// One of the three forms of a certificate's signer multiset, tagged by its name.
fn signer_form(name: &str, field: &str, items: &str, description: &str) -> Schema {
    let body = ObjectBuilder::new()
        .property("n", integer("Number of members"))
        .required("n")
        .property(
            field,
            ArrayBuilder::new().items(integer(items).maximum(Some(if field == "bits" {
                255
            } else {
                65_535
            }))),
        )
        .required(field)
        .property("repeats", repeats())
        .required("repeats");
    ObjectBuilder::new()
        .description(Some(description))
        .property(name, body)
        .required(name)
        .build()
        .into()
}

/// A quorum certificate: its signers (a multiset, in whichever of three forms is smallest) and
/// their aggregate BLS signature.
pub(crate) fn certificate() -> Schema {
    let signers = OneOfBuilder::new()
        .description(Some(
            "The signers, in the smallest of three forms, plus the members counted more than once",
        ))
        .item(signer_form(
            "Bitmap",
            "bits",
            "A byte of the bitmap",
            "bit i of bits (byte i / 8, bit i % 8) is member i",
        ))
        .item(signer_form(
            "Listed",
            "gaps",
            "Distance from the previous member minus one (the first: its index)",
            "the members, as gaps",
        ))
        .item(signer_form(
            "AllBut",
            "gaps",
            "Distance from the previous absent member minus one (the first: its index)",
            "every member except those listed, as gaps",
        ));
    ObjectBuilder::new()
        .description(Some(
            "Quorum certificate: who signed and their aggregate signature (checked by beaufort verify)",
        ))
        .property("signers", signers)
        .required("signers")
        .property("signature", bls_signature())
        .required("signature")
        .build()
        .into()
}

fn action(name: &str, fields: &[(&str, Schema, bool)], description: &str) -> Schema {
    let mut object = ObjectBuilder::new()
        .description(Some(description))
        .property(
            "action",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name])),
        )
        .required("action");
    for (field, schema, required) in fields {
        object = object.property(*field, schema.clone());
        if *required {
            object = object.required(*field);
        }
    }
    object.build().into()
}

/// The step that produced a ticket's current value (`last`), tagged by `action`.
pub(crate) fn ticket_action() -> Schema {
    let text = |d: &str| -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(d))
            .build()
            .into()
    };
    let number = |d: &str| -> Schema { integer(d).build().into() };
    OneOfBuilder::new()
        .item(action("issue", &[], "Issued by its issuer"))
        .item(action(
            "redeem",
            &[
                ("merchant", number("The member where it was redeemed"), true),
                ("amount", number("Points redeemed"), true),
                (
                    "signature",
                    text("The owner's signature over the redeem challenge, hex"),
                    true,
                ),
                (
                    "request_id",
                    text("The client's request id, when the redemption named one"),
                    false,
                ),
            ],
            "Points redeemed at a merchant, signed by the owner",
        ))
        .item(action(
            "transfer",
            &[
                ("from", user_key(), true),
                (
                    "signature",
                    text("The previous owner's signature over the transfer challenge, hex"),
                    true,
                ),
            ],
            "Given to the current owner by `from`",
        ))
        .build()
        .into()
}

/// Any JSON value (a contract's input or data), with every type spelled out: an empty schema
/// means the same in OpenAPI 3.1, but not every tool reads it.
pub(crate) fn any_value() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::Object,
            Type::Array,
            Type::String,
            Type::Number,
            Type::Boolean,
            Type::Null,
        ]))
        .description(Some("Any JSON value"))
        .build()
        .into()
}

/// An asset's state: the phase of its contract's machine and the phase's data.
pub(crate) fn machine_state() -> Schema {
    ObjectBuilder::new()
        .property("name", ObjectBuilder::new().schema_type(Type::String))
        .required("name")
        .property("value", any_value())
        .required("value")
        .build()
        .into()
}

/// A contract's transitions: name, the states it leaves from and the state it leads to.
pub(crate) fn transitions() -> Schema {
    let spec = ObjectBuilder::new()
        .property("name", ObjectBuilder::new().schema_type(Type::String))
        .required("name")
        .property(
            "from",
            ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
        )
        .required("from")
        .property("to", ObjectBuilder::new().schema_type(Type::String))
        .required("to");
    ArrayBuilder::new().items(spec).build().into()
}

/// The members of the public network description, in index order: BLS key, proof of
/// possession, libp2p identity and addresses of each.
pub(crate) fn network_members() -> Schema {
    let text = |d: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(d))
    };
    let key = ObjectBuilder::new()
        .property(
            "public_key",
            string("^[0-9a-f]{192}$", "BLS12-381 public key (G2) in hex"),
        )
        .required("public_key")
        .property(
            "pop",
            string("^[0-9a-f]{96}$", "Proof of possession of the key, hex"),
        )
        .required("pop")
        .property("peer_id", text("libp2p peer id"))
        .required("peer_id")
        .property(
            "addresses",
            ArrayBuilder::new().items(text("libp2p multiaddress")),
        )
        .required("addresses")
        .property("name", text("Display name (a shop's name)"))
        .property("api_url", text("Public URL of the member's HTTP API"));
    ArrayBuilder::new().items(key).build().into()
}
