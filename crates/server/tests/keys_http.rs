//! API keys over HTTP against the real binary: `POST /v1/keys` creates a key of the caller's org
//! (shown once, stored hashed), `DELETE /v1/keys/{id}` revokes one of the caller's org, and a
//! revoked key is refused by the very next request; bad bodies are 400s naming the field.

mod common;

use common::{Loupe, client, native_records, ndjson, run_loupe};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn cli_key(dir: &std::path::Path, org: &str) -> String {
    let d = dir.to_str().expect("utf-8 path");
    let (st, out, err) = run_loupe(
        &[
            "keys",
            "create",
            "--org",
            org,
            "--name",
            "admin",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(st.success(), "keys create: {err}");
    out.trim().to_string()
}

struct Api<'a> {
    l: &'a Loupe,
}

impl Api<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut rb = client().request(method, self.l.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = rb.send().await.expect("send");
        let (s, h) = (r.status(), r.headers().clone());
        (s, r.json().await.unwrap_or(Value::Null), h)
    }

    async fn create(&self, key: &str, body: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(reqwest::Method::POST, "/v1/keys", Some(key), Some(body))
            .await;
        (s, v)
    }

    async fn revoke(&self, key: &str, id: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(
                reqwest::Method::DELETE,
                &format!("/v1/keys/{id}"),
                Some(key),
                None,
            )
            .await;
        (s, v)
    }

    async fn list(&self, key: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(reqwest::Method::GET, "/v1/keys", Some(key), None)
            .await;
        (s, v)
    }

    async fn ingest(&self, key: &str) -> StatusCode {
        let (_, recs) = native_records(1, "gpt-4o-mini");
        client()
            .post(self.l.url("/v1/ingest"))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(ndjson(&recs))
            .send()
            .await
            .expect("ingest")
            .status()
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn keys_are_created_used_listed_and_revoked_over_http() {
    let dir = tempfile::tempdir().expect("tmp");
    let admin = cli_key(dir.path(), "acme");
    let globex = cli_key(dir.path(), "globex");
    let l = Loupe::start(dir.path(), &[], &[]);
    let api = Api { l: &l };
    let admin_id = ids(&api.list(&admin).await.1)[0].clone();

    // Create: the key is in this answer only, never cached, of the caller's org.
    let (s, v, h) = api
        .send(
            reqwest::Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(r#"{"name": "ci pipeline"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(h["cache-control"], "no-store");
    let new_key = v["key"].as_str().expect("key").to_string();
    let new_id = v["id"].as_str().expect("id").to_string();
    assert!(new_key.starts_with("sk-loupe-"), "{v}");
    assert_eq!(v["org"], "acme");
    assert_eq!(v["name"], "ci pipeline");
    assert_eq!(v["created_by"], json!(admin_id));
    assert!(new_key.starts_with(v["prefix"].as_str().expect("prefix")));
    let file = std::fs::read_to_string(dir.path().join("keys.json")).expect("keys.json");
    assert!(!file.contains(&new_key), "raw key stored");
    assert!(file.contains(&new_id));

    // The new key works at once, and lists itself as the current key of acme.
    assert_eq!(api.ingest(&new_key).await, StatusCode::OK);
    let (s, list) = api.list(&new_key).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["org"], "acme");
    assert_eq!(ids(&list), vec![admin_id.clone(), new_id.clone()]);
    let mine = &list["keys"][1];
    assert_eq!(mine["current"], true);
    assert_eq!(mine["name"], "ci pipeline");
    assert_eq!(list["keys"][0]["current"], false);
    assert!(
        !list.to_string().contains(&new_key),
        "listing shows the key"
    );
    assert!(!list.to_string().contains("hash"), "listing shows the hash");
    // Another org sees none of it.
    let (_, g) = api.list(&globex).await;
    assert_eq!(g["org"], "globex");
    assert!(!ids(&g).contains(&new_id));

    // Another org's key, an unknown id: 404, and nothing changes.
    let (s, v) = api.revoke(&globex, &new_id).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    let (s, v) = api
        .revoke(&admin, "00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // A key cannot revoke itself (the org would keep no way in through it).
    let (s, v) = api.revoke(&new_key, &new_id).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("cannot revoke itself"),
        "{v}"
    );
    assert_eq!(api.ingest(&new_key).await, StatusCode::OK);

    // Revoke: the very next request with it is refused, everywhere.
    let (s, v) = api.revoke(&admin, &new_id).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["revoked"]["id"], json!(new_id));
    assert_eq!(api.list(&new_key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.ingest(&new_key).await, StatusCode::UNAUTHORIZED);
    let (s, _, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(&new_key),
            Some("{}"),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the gateway refuses it too");
    assert_eq!(ids(&api.list(&admin).await.1), vec![admin_id.clone()]);
    let (s, _) = api.revoke(&admin, &new_id).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "revoked twice");
    let file = std::fs::read_to_string(dir.path().join("keys.json")).expect("keys.json");
    assert!(!file.contains(&new_id));
    // The other keys still work.
    assert_eq!(api.ingest(&admin).await, StatusCode::OK);
    assert_eq!(api.ingest(&globex).await, StatusCode::OK);

    // No key, a wrong key: 401 before anything else.
    let (s, _, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/keys",
            None,
            Some(r#"{"name": "x"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api.revoke("sk-loupe-wrong", &admin_id).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    l.sigterm_and_wait();
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let admin = cli_key(dir.path(), "acme");
    let l = Loupe::start(dir.path(), &[], &[]);
    let api = Api { l: &l };
    let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(101));
    for (body, field, needle) in [
        ("{}", Some("name"), "name is required"),
        (r#"{"name": ""}"#, Some("name"), "name is empty"),
        (&long, Some("name"), "at most 100"),
        (r#"{"name": "a\nb"}"#, Some("name"), "control character"),
        (r#"{"name": " x"}"#, Some("name"), "spaces"),
        (r#"{"name": 5}"#, Some("name"), "name must be a string"),
        (
            r#"{"name": "ok", "org": "globex"}"#,
            Some("org"),
            "org cannot be chosen",
        ),
        (
            r#"{"name": "ok", "nmae": "x"}"#,
            Some("nmae"),
            "unknown field \"nmae\"",
        ),
        ("[]", None, "JSON object"),
        ("not json", None, "JSON object"),
        ("", None, "JSON object"),
    ] {
        let (s, v) = api.create(&admin, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_input", "{body}: {v}");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(msg.contains(needle), "{body}: {msg}");
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{body}: {v}");
        }
    }
    let (_, list) = api.list(&admin).await;
    assert_eq!(ids(&list).len(), 1, "no key was created: {list}");
    l.sigterm_and_wait();
}

#[tokio::test]
async fn concurrent_creates_over_http_and_the_cli_lose_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let admin = cli_key(dir.path(), "acme");
    let l = Loupe::start(dir.path(), &[], &[]);
    let api = Api { l: &l };
    let http = futures::future::join_all((0..16).map(|i| {
        let api = &api;
        let admin = &admin;
        async move { api.create(admin, &format!(r#"{{"name": "k{i}"}}"#)).await }
    }));
    // The CLI writes the same file from other processes meanwhile.
    let d = dir.path().to_path_buf();
    let cli = tokio::task::spawn_blocking(move || {
        let procs: Vec<_> = (0..4)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let name = format!("cli{i}");
                    let dd = d.to_str().expect("utf-8").to_string();
                    run_loupe(
                        &[
                            "keys",
                            "create",
                            "--org",
                            "acme",
                            "--name",
                            &name,
                            "--data-dir",
                            &dd,
                        ],
                        &[],
                    )
                })
            })
            .collect();
        procs
            .into_iter()
            .map(|p| p.join().expect("thread"))
            .collect::<Vec<_>>()
    });
    let made = http.await;
    for (st, out, err) in cli.await.expect("cli") {
        assert!(st.success(), "{out} {err}");
    }
    let mut keys = Vec::new();
    for (s, v) in made {
        assert_eq!(s, StatusCode::CREATED, "{v}");
        keys.push(v["key"].as_str().expect("key").to_string());
    }
    let (_, list) = api.list(&admin).await;
    assert_eq!(ids(&list).len(), 1 + 16 + 4, "{list}");
    for k in &keys {
        assert_eq!(api.list(k).await.0, StatusCode::OK, "lost {k}");
    }
    l.sigterm_and_wait();
}

#[tokio::test]
async fn without_keys_the_first_key_is_made_on_the_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(dir.path(), &[], &[]);
    let api = Api { l: &l };
    let (s, v, _) = api.send(reqwest::Method::GET, "/v1/keys", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"org": "default", "auth_required": false, "keys": []})
    );
    let (s, v, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/keys",
            None,
            Some(r#"{"name": "x"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v.to_string().contains("loupe keys create"), "{v}");
    let (s, _, _) = api
        .send(reqwest::Method::DELETE, "/v1/keys/whatever", None, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(!dir.path().join("keys.json").exists(), "no key was written");
    l.sigterm_and_wait();

    // The CLI revokes keys of any org; the last one turns authentication off (with a warning).
    let admin = cli_key(dir.path(), "acme");
    let d = dir.path().to_str().expect("utf-8");
    let l = Loupe::start(dir.path(), &[], &[]);
    let api = Api { l: &l };
    let id = ids(&api.list(&admin).await.1)[0].clone();
    let (st, _, err) = run_loupe(&["keys", "revoke", &id, "--data-dir", d], &[]);
    assert!(st.success(), "{err}");
    assert!(err.contains("no API keys remain"), "{err}");
    assert_eq!(
        api.list(&admin).await.1["auth_required"],
        false,
        "the server saw the CLI's change"
    );
    let (st, _, err) = run_loupe(&["keys", "revoke", &id, "--data-dir", d], &[]);
    assert!(!st.success());
    assert!(err.contains("no API key with id"), "{err}");
    l.sigterm_and_wait();
}
