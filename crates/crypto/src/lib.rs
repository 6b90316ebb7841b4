//! Cryptography for Beaufort.
//!
//! Everything a replica signs or hashes goes through this crate, so the protocol core never touches
//! a curve or a hash function directly.

pub mod hash;
