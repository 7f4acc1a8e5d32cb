//! The JSON API against its own OpenAPI document, read by an outside tool:
//! schemathesis (from PyPI) generates requests for every documented
//! operation and sends them to a live server, on SQLite and on PostgreSQL.
//! It fails on any 5xx, and on any answer whose status, content type,
//! headers or body the document does not describe.
//!
//! The server holds what the operations look for: the admin token, a
//! service with accounts, keys and an OIDC client, and a pending challenge
//! with its binding cookie. Half of the generated path parameters and
//! tokens name those; the other half are schemathesis's own.

use std::{path::Path, time::Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};
use sesame_tests::{stderr, stdout, Browser, PgDatabase, Result, Server, ServerOptions, Sesame, ADMIN_TOKEN};

/// The `st` program of schemathesis; `scripts/test` installs a pinned
/// schemathesis and sets this.
const SCHEMATHESIS: &str = "SESAME_SCHEMATHESIS";

/// Generated test cases per operation and phase: with the coverage phase's
/// own cases, about 1,100 requests and half a minute per database on two
/// cores.
const MAX_EXAMPLES: &str = "25";

/// What must hold for every answer: no 5xx, and status, content type,
/// headers and body (each event of an event stream too) as the document
/// says. `unsupported_method` also sends the methods a path does not take,
/// which must get 405.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,unsupported_method";

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document_on_sqlite() -> Result<()> {
    conformance(ServerOptions::default()).await
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document_on_postgresql() -> Result<()> {
    let db = PgDatabase::create()?;
    conformance(ServerOptions { database_url: Some(db.url.clone()), ..ServerOptions::default() }).await
}

async fn conformance(options: ServerOptions) -> Result<()> {
    let Some(st) = std::env::var_os(SCHEMATHESIS) else {
        bail!("{SCHEMATHESIS} is not set: run scripts/test, which installs schemathesis, or set it to schemathesis's `st` program");
    };
    // A code window as long as the challenge lives, so that the token the
    // run is given stays good while it runs.
    let server = Server::start_with(ServerOptions { code_window: Some(300), ..options }).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, fixtures(&server).await?)?;
    let started = Instant::now();
    // The deleting operations run last, so that what they delete cannot
    // hide the rest of the API from the first run.
    for methods in [["--exclude-method", "DELETE"], ["--include-method", "DELETE"]] {
        run(&st, dir.path(), &config, &server, &methods).await?;
    }
    eprintln!("schemathesis passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Makes what the operations look for, and returns the schemathesis
/// configuration that names it.
async fn fixtures(server: &Server) -> Result<String> {
    let admin = server.admin();
    let service = server.create_service("Conformance").await?;
    let doomed = server.create_service("Doomed").await?;
    let browser = Browser::new(server);
    let sesame = Sesame::new();
    for name in ["alice", "bob"] {
        let challenge = browser.start_challenge(&service.id).await?;
        let registered = sesame.run(&["--json", "register", &challenge.token, "--name", name, "--yes"]);
        ensure!(registered.status.success(), "sesame register failed: {}", stderr(&registered));
    }
    let keys: Value = admin
        .request(reqwest::Method::GET, &format!("/admin/api/services/{}/accounts/alice/keys", service.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = keys[0]["id"].as_str().context("alice has a key")?.to_owned();
    let client: Value = admin
        .request(reqwest::Method::PUT, &format!("/admin/api/services/{}/oidc", service.id))
        .json(&json!({"redirect_uris": ["http://localhost:8000/callback"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    // A pending challenge, with the binding cookie its browser holds.
    let created =
        reqwest::Client::new().post(server.url(&format!("/api/services/{}/challenges", service.id))).send().await?;
    let cookie = created
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("the challenge sets its binding cookie")?
        .to_owned();
    let challenge: Value = created.json().await?;
    let text = |value: &Value| value.as_str().map(str::to_owned).context("a string in the fixture");
    Ok(format!(
        r#"
[auth.openapi.admin_token]
bearer = "{ADMIN_TOKEN}"

[auth.openapi.client_secret_basic]
username = "{client_id}"
password = "{client_secret}"

[dictionaries]
services = {{ values = ["{service}"] }}
doomed_services = {{ values = ["{doomed}"] }}
accounts = {{ values = ["alice"] }}
doomed_accounts = {{ values = ["bob"] }}
keys = {{ values = ["{key}"] }}
challenges = {{ values = ["{challenge_id}"] }}
tokens = {{ values = ["{token}"] }}

[parameters]
"path.id" = {{ dictionary = "services", probability = 0.5 }}
"path.name" = {{ dictionary = "accounts", probability = 0.5 }}
"path.key_id" = {{ dictionary = "keys", probability = 0.5 }}
"path.cid" = {{ dictionary = "challenges", probability = 0.5 }}
"body.token" = {{ dictionary = "tokens", probability = 0.5 }}

[[operations]]
include-operation-id = "delete_service"
parameters = {{ "path.id" = {{ dictionary = "doomed_services", probability = 0.5 }} }}

[[operations]]
include-operation-id = "delete_account"
parameters = {{ "path.name" = {{ dictionary = "doomed_accounts", probability = 0.5 }} }}

[[operations]]
include-tag = "challenges"
headers = {{ Cookie = "{cookie}" }}
max-stream-events = 3
"#,
        service = service.id,
        doomed = doomed.id,
        client_id = text(&client["client_id"])?,
        client_secret = text(&client["client_secret"])?,
        challenge_id = text(&challenge["challenge_id"])?,
        token = text(&challenge["token"])?,
    ))
}

/// One schemathesis run over the operations `methods` selects.
async fn run(st: &std::ffi::OsStr, dir: &Path, config: &Path, server: &Server, methods: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new(st)
        .current_dir(dir)
        .arg("--config-file")
        .arg(config)
        .args(["run", &server.url("/api/openapi.json"), "--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing", "--generation-database", "none", "--no-color"])
        .args(["--request-timeout", "10"])
        .args(methods)
        .output()
        .await
        .with_context(|| format!("cannot run schemathesis ({SCHEMATHESIS}={})", st.to_string_lossy()))?;
    ensure!(
        output.status.success(),
        "schemathesis found answers that break the document ({}):\n{}{}",
        methods.join(" "),
        stdout(&output),
        stderr(&output)
    );
    Ok(())
}
