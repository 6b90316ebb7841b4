//! Prints the node's OpenAPI document, exactly as `GET /openapi.json` serves it (pretty JSON),
//! without starting a node. The web pages' TypeScript client takes its types from this output
//! (crates/node/web-ts, checked by scripts/check-web-client.sh):
//!
//! ```sh
//! cargo run --release --example openapi > crates/node/web-ts/openapi.json
//! ```

fn main() {
    let document = beaufort_node::api::openapi_document();
    let text = serde_json::to_string_pretty(&document).expect("the document serialises");
    println!("{text}");
}
