//! The served OpenAPI document against the router of the real binary:
//! every operation it lists is served, every method it leaves out of a
//! listed path is refused, and every operation of the reference contract it
//! leaves out is not served.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, Server};
use serde_json::Value;

const DOCUMENT: &str = include_str!("../openapi/openapi.json");
const UNSERVED: &str = include_str!("../openapi/unserved.txt");
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// A concrete path for a template: every `{parameter}` becomes `x`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status of an unauthenticated request.
fn status(s: &Server, method: &str, template: &str) -> (u16, Value) {
    s.call_as(None, method, &concrete(template), None)
}

#[test]
fn served_document_is_the_committed_one() {
    let s = Server::start(Backend::Sqlite);
    let (code, body) = s.call_as(None, "GET", "/api/openapi.json", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, serde_json::from_str::<Value>(DOCUMENT).unwrap());
    assert_eq!(body["openapi"], "3.1.0");
}

#[test]
fn document_matches_the_router() {
    let s = Server::start(Backend::Sqlite);
    let document: Value = serde_json::from_str(DOCUMENT).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() > 30, "{} paths", paths.len());
    for (template, item) in paths {
        for method in METHODS {
            let (code, body) = status(&s, method, template);
            match item.get(method.to_lowercase()) {
                // Served: the token check answers, or the open document.
                Some(op) if op["security"] == serde_json::json!([]) => {
                    assert_eq!(code, 200, "{method} {template}: {body}")
                }
                Some(_) => assert_eq!(code, 401, "{method} {template}: {body}"),
                None => assert_eq!(code, 405, "{method} {template} is served: {body}"),
            }
        }
    }
    let mut refused = 0;
    for line in UNSERVED.lines() {
        let (method, template) = line.split_once(' ').unwrap();
        let (code, body) = status(&s, &method.to_uppercase(), template);
        assert!(
            code == 404 || code == 405,
            "{line} is served but not in the document: {code} {body}"
        );
        refused += 1;
    }
    assert!(refused > 100, "{refused} unserved operations");
}

#[test]
fn every_recorded_activity_code_is_documented() {
    let document: Value = serde_json::from_str(DOCUMENT).unwrap();
    let codes = &document["components"]["schemas"]["Event"]["properties"]["activity_code"]["enum"];
    let codes = codes.as_array().unwrap();
    for activity in meshplane_core::model::Activity::ALL {
        assert!(
            codes.iter().any(|c| c == activity.code),
            "{} missing from Event.activity_code (rerun server/openapi/extract.py)",
            activity.code
        );
    }
}
