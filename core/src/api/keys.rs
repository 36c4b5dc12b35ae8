//! Secrets, addresses and names: PAT and setup-key helpers, secret hashing,
//! IPAM and DNS labels.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, rng};
use crate::error::ApiError;
use crate::validate::Cidr;
use crate::{dns_label, ipam, keys};

pub(super) const OPS: &[&str] = &[
    "argon2_hash",
    "argon2_verify",
    "dns_label",
    "ipam_allocate",
    "ipam_account_network",
    "pat_generate",
    "pat_validate",
    "secret_hash",
    "secret_verify",
    "setup_key_generate",
    "setup_key_mask",
    "setup_key_validate",
];

#[derive(Deserialize)]
struct Seed {
    seed: u64,
}

#[derive(Deserialize)]
struct Secret {
    secret: String,
}

#[derive(Deserialize)]
struct SecretCheck {
    secret: String,
    hash: String,
}

#[derive(Deserialize)]
struct SeededSecret {
    secret: String,
    seed: u64,
}

#[derive(Deserialize)]
struct Token {
    token: String,
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

#[derive(Deserialize)]
struct Allocate {
    network: Cidr,
    #[serde(default)]
    taken: BTreeSet<Ipv4Addr>,
    seed: u64,
}

#[derive(Deserialize)]
struct Label {
    hostname: String,
    ip: Ipv4Addr,
    #[serde(default)]
    ephemeral: bool,
    #[serde(default)]
    taken: BTreeSet<String>,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    Some(run(op, input))
}

fn run(op: &str, input: Value) -> Result<Value, ApiError> {
    match op {
        "pat_generate" => {
            let token = keys::generate_pat(&mut rng(parse::<Seed>(input)?.seed));
            Ok(json!({ "hashed_token": keys::hash_secret(&token), "token": token }))
        }
        "pat_validate" => {
            keys::check_pat(&parse::<Token>(input)?.token)?;
            Ok(json!({ "valid": true }))
        }
        "setup_key_generate" => {
            let key = keys::generate_setup_key(&mut rng(parse::<Seed>(input)?.seed));
            Ok(json!({
                "hashed_key": keys::hash_secret(&key),
                "key": key,
                "masked_key": keys::mask_setup_key(&key),
            }))
        }
        "setup_key_validate" => {
            keys::check_setup_key(&parse::<Key>(input)?.key)?;
            Ok(json!({ "valid": true }))
        }
        "setup_key_mask" => {
            Ok(json!({ "masked_key": keys::mask_setup_key(&parse::<Key>(input)?.key) }))
        }
        "secret_hash" => Ok(json!({ "hash": keys::hash_secret(&parse::<Secret>(input)?.secret) })),
        "secret_verify" => {
            let c = parse::<SecretCheck>(input)?;
            Ok(json!({ "matches": keys::verify_secret_hash(&c.secret, &c.hash) }))
        }
        "argon2_hash" => {
            let s = parse::<SeededSecret>(input)?;
            Ok(json!({ "hash": keys::hash_argon2(&s.secret, &mut rng(s.seed))? }))
        }
        "argon2_verify" => {
            let c = parse::<SecretCheck>(input)?;
            Ok(json!({ "matches": keys::verify_argon2(&c.secret, &c.hash) }))
        }
        "ipam_allocate" => {
            let a = parse::<Allocate>(input)?;
            let ip = ipam::allocate(a.network, |ip| a.taken.contains(&ip), &mut rng(a.seed))?;
            Ok(json!({ "ip": ip.to_string() }))
        }
        "ipam_account_network" => {
            let net = ipam::new_account_network(&mut rng(parse::<Seed>(input)?.seed));
            Ok(json!({ "network": net.to_string() }))
        }
        "dns_label" => {
            let l = parse::<Label>(input)?;
            let label =
                dns_label::label_for(&l.hostname, l.ip, l.ephemeral, |c| l.taken.contains(c));
            Ok(json!({ "label": label }))
        }
        _ => Err(ApiError::unknown_op(op)),
    }
}
