//! `beaufort keygen`: a member's BLS key pair.

use anyhow::{Context, Result};
use beaufort_crypto::keyfile::{generate_member_key, write_secret_key_file};
use clap::Args;
use ring::rand::SystemRandom;
use std::path::PathBuf;

/// Where to put the key.
#[derive(Args)]
pub struct KeygenArgs {
    /// The secret key file to create (mode 0600; never printed).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// Generates a key, writes the secret to a file and prints the public part (public key and proof
/// of possession) as JSON, ready for the network configuration.
pub fn keygen(args: KeygenArgs) -> Result<()> {
    let (secret, member) = generate_member_key(&SystemRandom::new()).context("generating a key")?;
    write_secret_key_file(&args.out, &secret, args.force)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", serde_json::to_string_pretty(&member)?);
    Ok(())
}
