//! The REST calls the harness makes as the account's owner: a reusable setup
//! key for the simulated peers, and the policy it rewrites for each change.

use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

/// How long one REST call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a REST call failed.
#[derive(Debug, Error)]
pub enum RestError {
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{method} {path}: {reason}")]
    Transport {
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Shape(String),
}

/// An owner's REST client.
#[derive(Debug, Clone)]
pub struct Rest {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// The policy each change rewrites, and the group it connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub policy_id: String,
    pub policy_name: String,
    pub all_group: String,
}

impl Rest {
    pub fn new(base: &str, token: &str) -> Rest {
        Rest {
            base: base.trim_end_matches('/').to_string(),
            auth: format!("Token {token}"),
            agent: ureq::AgentBuilder::new().timeout(CALL_TIMEOUT).build(),
        }
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, RestError> {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &self.auth);
        let result = match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        };
        match result {
            Ok(response) => response.into_json().map_err(|e| RestError::Transport {
                method,
                path: path.to_string(),
                reason: format!("unreadable answer: {e}"),
            }),
            Err(ureq::Error::Status(status, response)) => Err(RestError::Status {
                method,
                path: path.to_string(),
                status,
                body: response.into_string().unwrap_or_default(),
            }),
            Err(e) => Err(RestError::Transport {
                method,
                path: path.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// A new reusable setup key without expiry or usage limit: its value.
    pub fn reusable_setup_key(&self) -> Result<String, RestError> {
        let body = json!({"name": "loadgen", "type": "reusable", "expires_in": 0,
            "auto_groups": [], "usage_limit": 0});
        let key = self.call("POST", "/api/setup-keys", Some(body))?;
        text(&key, "key", "setup key")
    }

    /// The account's `All` group and the policy to rewrite: the one named
    /// `Default`, or else the first.
    pub fn target(&self) -> Result<Target, RestError> {
        let groups = self.call("GET", "/api/groups", None)?;
        let all = list(&groups, "groups")?
            .iter()
            .find(|g| g["name"] == "All")
            .ok_or_else(|| RestError::Shape("the account has no `All` group".to_string()))?;
        let policies = self.call("GET", "/api/policies", None)?;
        let policies = list(&policies, "policies")?;
        let policy = policies
            .iter()
            .find(|p| p["name"] == "Default")
            .or_else(|| policies.first())
            .ok_or_else(|| RestError::Shape("the account has no policy to change".to_string()))?;
        Ok(Target {
            policy_id: text(policy, "id", "policy")?,
            policy_name: text(policy, "name", "policy")?,
            all_group: text(all, "id", "group")?,
        })
    }

    /// Rewrites the target policy as "All may reach All on TCP `port`, both
    /// ways": every peer's firewall rules change and nothing else does.
    pub fn allow_port(&self, target: &Target, port: u16) -> Result<(), RestError> {
        let rule = json!({"name": "loadgen", "enabled": true, "action": "accept",
            "bidirectional": true, "protocol": "tcp", "ports": [port.to_string()],
            "sources": [target.all_group], "destinations": [target.all_group]});
        let body = json!({"name": target.policy_name, "enabled": true, "rules": [rule]});
        self.call(
            "PUT",
            &format!("/api/policies/{}", target.policy_id),
            Some(body),
        )?;
        Ok(())
    }
}

fn list<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, RestError> {
    value
        .as_array()
        .ok_or_else(|| RestError::Shape(format!("the {what} list is not an array: {value}")))
}

fn text(value: &Value, field: &str, what: &str) -> Result<String, RestError> {
    value[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| RestError::Shape(format!("{what} without `{field}`: {value}")))
}
