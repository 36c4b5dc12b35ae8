//! Peer registration and login: `register_peer`, `check_login`,
//! `setup_key_state`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, rng, to_value};
use crate::error::ApiError;
use crate::model::{Account, PeerId, SetupKey};
use crate::registration::{self, RegistrationRequest};
use crate::time::Timestamp;

pub(super) const OPS: &[&str] = &["check_login", "register_peer", "setup_key_state"];

#[derive(Deserialize)]
struct Register {
    account: Account,
    setup_key: SetupKey,
    request: RegistrationRequest,
    peer_id: PeerId,
    now: Timestamp,
    seed: u64,
}

#[derive(Deserialize)]
struct Login {
    account: Account,
    wg_key: String,
    now: Timestamp,
}

#[derive(Deserialize)]
struct KeyState {
    setup_key: SetupKey,
    now: Timestamp,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    Some(run(op, input))
}

fn run(op: &str, input: Value) -> Result<Value, ApiError> {
    match op {
        "register_peer" => {
            let r = parse::<Register>(input)?;
            let reg = registration::register_with_setup_key(
                &r.account,
                &r.setup_key,
                &r.request,
                r.peer_id,
                r.now,
                &mut rng(r.seed),
            )?;
            to_value(&reg)
        }
        "check_login" => {
            let l = parse::<Login>(input)?;
            let peer = registration::check_login(&l.account, &l.wg_key, l.now)?;
            Ok(json!({ "peer_id": peer.id }))
        }
        "setup_key_state" => {
            let k = parse::<KeyState>(input)?;
            let state = k.setup_key.state(k.now);
            Ok(
                json!({ "state": state.as_str(), "valid": state == crate::model::SetupKeyState::Valid }),
            )
        }
        _ => Err(ApiError::unknown_op(op)),
    }
}
