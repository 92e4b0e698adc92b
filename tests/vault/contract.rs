//! The HTTP contract in `docs/openapi.json` and the router agree: every route is documented,
//! every documented path and method is routed, nothing else answers, and the vault serves the
//! document itself.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;

use crate::common::TestVault;

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

fn contract() -> Value {
    serde_json::from_str(include_str!("../../docs/openapi.json"))
        .expect("docs/openapi.json is JSON")
}

/// Every path literal given to `.route(` in `src/http/`.
fn routed_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    for entry in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, _) in source.match_indices(".route(") {
            let rest = source[i + ".route(".len()..].trim_start();
            let literal = rest
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .map(|(path, _)| path.to_owned())
                .expect("a route's path is a string literal");
            paths.insert(literal);
        }
    }
    paths
}

/// A concrete request path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{national_id}", "001099012345")
        .replace("{id}", "0190a4b2-0000-7000-8000-000000000001")
        .replace("{file}", "app.js")
        .replace("{seq}", "1")
        .replace("{jti}", "0190a4b2-0000-7000-8000-000000000002")
        .replace("{kind}", "staff")
}

#[test]
fn every_route_is_in_the_contract_and_every_documented_path_is_a_route() {
    let documented: BTreeSet<String> = contract()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let routed = routed_paths();
    assert!(routed.len() >= 15, "found the routes: {routed:?}");
    assert_eq!(
        routed, documented,
        "routes in src/http/ and paths in docs/openapi.json differ"
    );
}

#[tokio::test]
async fn every_documented_method_answers_and_no_other_does() {
    let vault = TestVault::new().await;
    let contract = contract();
    for (path, item) in contract["paths"].as_object().unwrap() {
        for method in METHODS {
            let documented = item.get(method.as_str().to_lowercase()).is_some();
            let request = Request::builder()
                .method(method.clone())
                .uri(concrete(path))
                .body(Body::empty())
                .unwrap();
            let status = vault.send(request).await.status;
            if documented {
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but answers {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented but answers"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_vault_serves_its_contract() {
    let vault = TestVault::new().await;
    let reply = vault.get("/v1/openapi.json", "no-token-needed").await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.json(), contract());
    assert_eq!(reply.json()["openapi"], "3.1.0");
}

#[test]
fn the_contract_lists_every_audit_action_role_and_outcome_the_vault_logs() {
    let spec = contract();
    let entry = &spec["components"]["schemas"]["AuditEntry"]["properties"];
    let words = |all: Vec<&str>| serde_json::json!(all);
    use hoso::domain::{AuditAction, Outcome, Role};
    assert_eq!(
        entry["action"]["enum"],
        words(AuditAction::ALL.iter().map(|a| a.as_str()).collect())
    );
    assert_eq!(
        entry["role"]["enum"],
        words(Role::ALL.iter().map(|a| a.as_str()).collect())
    );
    assert_eq!(
        entry["outcome"]["enum"],
        words(Outcome::ALL.iter().map(|a| a.as_str()).collect())
    );
}
