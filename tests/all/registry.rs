//! The coordinator's registry as a real process, against SQLite (the default)
//! and the real PostgreSQL on 127.0.0.1:5432: registration only of trusted
//! components, immutable versions, aliases, lineage, roles, audit, resumable
//! downloads, and data surviving a restart.

use crate::common::*;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn db_args(database: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--trust".to_string(),
        p(&keys().1).to_string(),
        "--mqtt-listen".into(),
        free_addr(),
    ];
    if let Some(db) = database {
        args.extend(["--database".to_string(), db.to_string()]);
    }
    args
}

fn cli(c: &Coordinator, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--coordinator", &c.url, "--token", token]);
    wasmops(&all)
}

fn cli_ok(c: &Coordinator, token: &str, args: &[&str]) -> String {
    let out = cli(c, token, args);
    assert!(
        out.status.success(),
        "wasmops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cli_err(c: &Coordinator, token: &str, args: &[&str]) -> String {
    let out = cli(c, token, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "wasmops {args:?} should fail");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn token(c: &Coordinator, admin: &str, name: &str, role: &str) -> String {
    cli_ok(
        c,
        admin,
        &["token", "create", "--name", name, "--role", role],
    )
    .trim()
    .to_string()
}

/// A signed build of the scaler fixture with these claims flags.
fn signed(out: &str, version: &str, extra: &[&str]) -> PathBuf {
    scaler_release(out, "churn", version, extra, &keys().0, None)
}

fn get(c: &Coordinator, token: &str, path: &str) -> Value {
    api_get(c, token, path)
}

fn exercise(data_dir: &Path, database: Option<&str>, tag: &str) {
    let v1 = signed(&format!("{tag}-v1.wasm"), "1.0.0", &["--sequence", "1"]);
    let v2 = signed(
        &format!("{tag}-v2.wasm"),
        "1.1.0",
        &[
            "--sequence",
            "2",
            "--dataset-id",
            "churn-2026-11",
            "--dataset-sha256",
            &"ab".repeat(32),
            "--training-run",
            "run-42",
            "--code-commit",
            "c0ffee",
            "--metric",
            "auc=0.93",
        ],
    );
    let c = start_coordinator(data_dir, &db_args(database));
    let admin = admin_token(data_dir);
    let viewer = token(&c, &admin, "dashboards", "viewer");
    let ds = token(&c, &admin, "alice", "data-scientist");
    let ops = token(&c, &admin, "bob", "operator");

    // Roles: a viewer cannot register, a data scientist can; unknown tokens are rejected.
    // The server refuses before reading the body and discards what the
    // client still sends, so the client reads the 403, not a reset.
    let err = cli_err(&c, &viewer, &["model", "register", p(&v1)]);
    assert!(err.contains("403") && err.contains("viewer"), "{err}");
    let err = cli_err(&c, "wo_not-a-token", &["model", "list"]);
    assert!(err.contains("401"), "{err}");
    // A malformed body is the caller's error: 400 naming what is wrong, as JSON.
    for (path, body, names) in [
        ("/v1/rollouts", r#"{"model": 5, "version": "1"}"#, "model"),
        (
            "/v1/rollouts",
            r#"{"model": "m", "version": "1", "gates": {"max_failure": 1}}"#,
            "max_failure",
        ),
        ("/v1/deployments", r#"{"model": "m"}"#, "version"),
        ("/v1/tokens", "not json", "body"),
    ] {
        let resp = http()
            .post(format!("{}{path}", c.url))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{path} {body}");
        let answer: Value = resp.json().unwrap();
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(names) && answer.get("incident").is_none(),
            "{path} {body}: {answer}"
        );
    }
    let out = cli_ok(&c, &ds, &["model", "register", p(&v1)]);
    assert!(out.starts_with("registered churn 1.0.0"), "{out}");
    let out = cli_ok(&c, &ds, &["model", "register", p(&v1)]);
    assert!(out.starts_with("already registered"), "{out}");
    cli_ok(&c, &ds, &["model", "register", p(&v2)]);

    // Only trusted, signed components get in.
    let unsigned = scratch().join(format!("{tag}-unsigned.wasm"));
    let bytes =
        wasmops_sign::set_custom_section(&std::fs::read(&v1).unwrap(), "unused", None).unwrap();
    std::fs::write(&unsigned, bytes).unwrap();
    let err = cli_err(&c, &ds, &["model", "register", p(&unsigned)]);
    assert!(err.contains("422") && err.contains("not signed"), "{err}");
    let mut tampered = std::fs::read(&v1).unwrap();
    let n = tampered.len();
    tampered[n - 10] ^= 1;
    let tampered_path = scratch().join(format!("{tag}-tampered.wasm"));
    std::fs::write(&tampered_path, tampered).unwrap();
    let err = cli_err(&c, &ds, &["model", "register", p(&tampered_path)]);
    assert!(err.contains("modified after signing"), "{err}");

    // Versions are immutable: same version, other content.
    let clash = signed(&format!("{tag}-clash.wasm"), "1.0.0", &["--sequence", "3"]);
    let err = cli_err(&c, &ds, &["model", "register", p(&clash)]);
    assert!(err.contains("409") && err.contains("immutable"), "{err}");

    // Aliases: operators move them, viewers cannot.
    cli_ok(&c, &ops, &["model", "alias", "churn", "champion", "1.0.0"]);
    cli_ok(
        &c,
        &ops,
        &["model", "alias", "churn", "challenger", "1.1.0"],
    );
    let err = cli_err(
        &c,
        &viewer,
        &["model", "alias", "churn", "champion", "1.1.0"],
    );
    assert!(err.contains("403"), "{err}");
    let err = cli_err(&c, &ops, &["model", "alias", "churn", "champion", "9.9.9"]);
    assert!(err.contains("404"), "{err}");
    cli_ok(
        &c,
        &ds,
        &["model", "tag", "churn", "1.1.0", "stage=validated"],
    );

    let list: Value =
        serde_json::from_str(&cli_ok(&c, &viewer, &["model", "list", "--json"])).unwrap();
    let churn = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "churn")
        .unwrap();
    assert_eq!(churn["versions"], 2);
    assert_eq!(churn["latest_version"], "1.1.0");
    assert_eq!(churn["aliases"]["champion"], "1.0.0");

    // Lineage comes from the signed claims.
    let shown: Value = serde_json::from_str(&cli_ok(
        &c,
        &viewer,
        &["model", "show", "churn", "challenger", "--json"],
    ))
    .unwrap();
    assert_eq!(shown["version"], "1.1.0");
    assert_eq!(shown["claims"]["lineage"]["training_run"], "run-42");
    assert_eq!(shown["claims"]["metrics"]["auc"], 0.93);
    assert_eq!(shown["tags"]["stage"], "validated");
    assert_eq!(
        shown["signer"],
        wasmops_sign::PublicKey::from_bytes(&std::fs::read(&keys().1).unwrap())
            .unwrap()
            .key_id()
    );
    let datasets = get(&c, &viewer, "/v1/datasets");
    assert_eq!(datasets[0]["id"], "churn-2026-11");
    assert_eq!(datasets[0]["used_by"][0], "churn@1.1.0");
    let runs = get(&c, &viewer, "/v1/runs");
    assert_eq!(runs[0]["id"], "run-42");
    assert_eq!(runs[0]["code_commit"], "c0ffee");

    // Downloads are sha256-checked and resume from a partial file.
    let pulled = scratch().join(format!("{tag}-pulled.wasm"));
    cli_ok(
        &c,
        &viewer,
        &["model", "pull", "churn", "champion", "--out", p(&pulled)],
    );
    assert!(std::fs::read(&pulled).unwrap() == std::fs::read(&v1).unwrap());
    let original = std::fs::read(&v2).unwrap();
    std::fs::write(
        pulled.with_extension("part"),
        &original[..original.len() / 3],
    )
    .unwrap();
    let out = cli_ok(
        &c,
        &viewer,
        &["model", "pull", "churn", "1.1.0", "--out", p(&pulled)],
    );
    assert!(out.contains("resumed at byte"), "{out}");
    assert!(std::fs::read(&pulled).unwrap() == original);

    // The audit log says who did what.
    let audit: Value = serde_json::from_str(&cli_ok(&c, &viewer, &["audit", "--json"])).unwrap();
    let has = |actor: &str, action: &str, target: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["target"] == target)
    };
    assert!(has("alice", "model.register", "churn@1.0.0"), "{audit}");
    assert!(has("bob", "alias.set", "churn:champion"), "{audit}");
    assert!(has("admin", "token.create", "bob"), "{audit}");
    assert!(
        !has("dashboards", "model.register", "churn@1.0.0"),
        "refused requests change nothing"
    );

    // A restarted coordinator has everything (and keeps the same admin token).
    drop(c);
    let c = start_coordinator(data_dir, &db_args(database));
    let list: Value =
        serde_json::from_str(&cli_ok(&c, &admin, &["model", "list", "--json"])).unwrap();
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "churn")
            .unwrap()["versions"],
        2
    );
}

#[test]
fn registry_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    exercise(dir.path(), None, "sqlite");
    assert!(dir.path().join("wasmops.db").exists());
}

/// The real PostgreSQL: a fresh database per run, dropped afterwards.
#[test]
fn registry_on_postgres() {
    let db = Postgres::fresh("registry");
    let dir = tempfile::tempdir().unwrap();
    exercise(dir.path(), Some(&db.url), "postgres");
}

/// A TLS stream to the coordinator's API, for requests written by hand.
fn raw_tls(c: &Coordinator) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let tcp = std::net::TcpStream::connect(c.url.trim_start_matches("https://")).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(test_tls().rustls_config(), name).unwrap();
    rustls::StreamOwned::new(tls, tcp)
}

/// Sends a request head only and returns the status line the server answers
/// with before any body byte is sent.
fn head_only(c: &Coordinator, head: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = raw_tls(c);
    s.write_all(head.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

/// Issue 24.5: an upload is judged on its token before a byte of its body is
/// read, and on its announced size before it is buffered; a chunked upload
/// (no announced size) is cut off at the limit.
#[test]
fn uploads_are_authenticated_and_sized_before_their_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_coordinator(
        dir.path(),
        &[
            "--trust".into(),
            p(&keys().1).into(),
            "--mqtt-listen".into(),
            free_addr(),
            "--max-artifact-mb".into(),
            "1".into(),
        ],
    );
    let admin = admin_token(dir.path());
    // 100 MB announced, none sent: the answers come anyway.
    let line = head_only(
        &c,
        "POST /v1/models HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n",
    );
    assert!(line.starts_with("HTTP/1.1 401"), "{line}");
    let line = head_only(
        &c,
        &format!(
            "POST /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\ncontent-length: 100000000\r\n\r\n"
        ),
    );
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    // A client that sends its whole body before reading the answer (as curl
    // and reqwest do) reads the refusal: the server discards the body rather
    // than resetting the connection under the client's writes.
    for auth in ["", &format!("authorization: Bearer {admin}\r\n")] {
        use std::io::{BufRead, BufReader, Write};
        let size = 32 << 20;
        let mut s = raw_tls(&c);
        let head =
            format!("POST /v1/models HTTP/1.1\r\nhost: x\r\n{auth}content-length: {size}\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![0u8; size])
            .expect("the refused body is read, not reset");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let want = if auth.is_empty() { "401" } else { "413" };
        assert!(line.starts_with(&format!("HTTP/1.1 {want}")), "{line}");
    }
    // Chunked, one byte over: refused at the 1 MiB mark, with the limit named
    // (without the limit this would be a 422: zeros are no component).
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(vec![0u8; (1 << 20) + 1]));
    let resp = http()
        .post(format!("{}/v1/models", c.url))
        .bearer_auth(&admin)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("at most 1048576 bytes"),
        "{v}"
    );
    // A component over the limit is refused the same way by the CLI.
    let wasm = signed("small.wasm", "1.0.0", &[]);
    let err = cli_err(&c, &admin, &["model", "register", p(&wasm)]);
    assert!(
        err.contains("413") && err.contains("max_artifact_mb"),
        "{err}"
    );
}
