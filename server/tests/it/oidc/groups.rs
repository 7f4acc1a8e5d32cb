//! Groups: the admin API that makes, renames and deletes them and sets an
//! account's (every refusal writing nothing), the `groups` claim, and
//! applications that admit only the members of some groups, after a
//! sign-in, with single sign-on, and at a refresh.

use super::*;

/// The second application's callback: another relying party of the same
/// service.
const WIKI_REDIRECT: &str = "https://wiki.example/oidc/callback";

async fn admin(app: &TestApp, method: Method, uri: &str, body: Option<Value>) -> TestResponse {
    let headers = [("authorization", ADMIN), ("content-type", "application/json")];
    send(app, method, uri, &headers, body.map(|b| b.to_string())).await
}

fn refused(response: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!((response.status, response.error().as_str()), (status, code), "{}", response.text());
    assert!(response.json()["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", response.text());
}

/// Makes group `name` of `service`; its id.
async fn group(app: &TestApp, service: &ServiceId, name: &str) -> String {
    let made =
        admin(app, Method::POST, &format!("/admin/api/services/{service}/groups"), Some(json!({"name": name}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    assert_eq!(made.json()["name"], name);
    made.json()["id"].as_str().expect("id").to_owned()
}

async fn set_groups(app: &TestApp, service: &ServiceId, account: &str, names: &[&str]) -> TestResponse {
    let uri = format!("/admin/api/services/{service}/accounts/{}/groups", urlencode(account));
    admin(app, Method::PUT, &uri, Some(json!({ "groups": names }))).await
}

async fn groups_of(app: &TestApp, service: &ServiceId, account: &str) -> Value {
    let uri = format!("/admin/api/services/{service}/accounts/{}/groups", urlencode(account));
    admin(app, Method::GET, &uri, None).await.json()["groups"].clone()
}

/// The service's groups as `[name, members]`, by name.
async fn listed(app: &TestApp, service: &ServiceId) -> Vec<(String, i64)> {
    let list = admin(app, Method::GET, &format!("/admin/api/services/{service}/groups"), None).await.json();
    let list = list.as_array().expect("a list").clone();
    list.iter()
        .map(|g| (g["name"].as_str().expect("name").to_owned(), g["members"].as_i64().expect("members")))
        .collect()
}

async fn add_account(app: &TestApp, service: &ServiceId, name: &str) {
    sqlx::query("INSERT INTO account (service_id, name, subject, created_at) VALUES ($1, $2, $3, $4)")
        .bind(service.to_string())
        .bind(name)
        .bind(sesame_server::signin::keys::new_id())
        .bind(1_767_225_600_i64)
        .execute(&app.sql)
        .await
        .expect("insert account");
}

/// Names the application of `rp` `name` and lets in only members of
/// `allowed` (everyone when empty).
async fn restrict(app: &TestApp, rp: &Rp, redirect: &str, name: &str, allowed: &[&str]) -> TestResponse {
    let uri = format!("/admin/api/services/{}/applications/{}", rp.service, rp.client_id);
    let body = json!({"name": name, "redirect_uris": [redirect], "post_logout_redirect_uris": ["https://app.example/bye"],
                      "allowed_groups": allowed});
    admin(app, Method::PUT, &uri, Some(body)).await
}

fn session_of(response: &TestResponse, rp: &Rp) -> String {
    let name = format!("sesame_session_{}", rp.service);
    format!("{name}={}", response.cookie(&name).expect("a session cookie"))
}

/// The hidden fields of the refusal page's Continue form, as a form body.
fn continue_form(page: &TestResponse) -> String {
    let html = page.text();
    let form =
        &html[html.find(r#"<form id="denied-continue" method="post" action="/oidc/authorize">"#).expect("form")..];
    let form = &form[..form.find("</form>").expect("end of form")];
    let mut fields = Vec::new();
    for input in form.split("<input type=\"hidden\" ").skip(1) {
        let attr = |name: &str| {
            let start = input.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
            input[start..].split('"').next().expect("quote").to_owned()
        };
        // askama escapes the values; these tests use none that need it.
        fields.push(format!("{}={}", attr("name"), urlencode(&attr("value"))));
    }
    fields.join("&")
}

async fn continue_from(app: &TestApp, page: &TestResponse, session: &str) -> TestResponse {
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("cookie", session), ("origin", ORIGIN)];
    send(app, Method::POST, "/oidc/authorize", &headers, Some(continue_form(page))).await
}

/// The query of a redirect to `redirect`.
fn back_at(response: &TestResponse, redirect: &str) -> HashMap<String, String> {
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.text());
    let location = response.headers[header::LOCATION].to_str().expect("location");
    assert!(location.starts_with(redirect), "{location}");
    url::Url::parse(location).expect("url").query_pairs().into_owned().collect()
}

fn asking(rp: &Rp, redirect: &str, scope: &str) -> String {
    authorize_url(rp, "")
        .replace("scope=openid%20profile", &format!("scope={}", urlencode(scope)))
        .replace(&urlencode(REDIRECT), &urlencode(redirect))
}

/// A code for `scope`, at once, for the browser with `session`.
async fn code_with(app: &TestApp, rp: &Rp, session: &str, scope: &str) -> String {
    back_at(&app.get(&asking(rp, REDIRECT, scope), Some(session)).await, REDIRECT)["code"].clone()
}

async fn token_form(app: &TestApp, rp: &Rp, form: String) -> TestResponse {
    let form =
        format!("{form}&client_id={}&client_secret={}", rp.client_id, urlencode(rp.secret.as_deref().expect("secret")));
    send(app, Method::POST, "/oidc/token", &[("content-type", "application/x-www-form-urlencoded")], Some(form)).await
}

async fn redeem(app: &TestApp, rp: &Rp, redirect: &str, code: &str) -> Value {
    let form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        urlencode(code),
        urlencode(redirect)
    );
    let answer = token_form(app, rp, form).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()
}

async fn refresh(app: &TestApp, rp: &Rp, token: &Value, scope: Option<&str>) -> TestResponse {
    let mut form = format!("grant_type=refresh_token&refresh_token={}", urlencode(token.as_str().expect("token")));
    if let Some(scope) = scope {
        form.push_str(&format!("&scope={}", urlencode(scope)));
    }
    token_form(app, rp, form).await
}

/// The `groups` of the ID token and of userinfo for `tokens`.
async fn released(app: &TestApp, rp: &Rp, tokens: &Value) -> (Option<Value>, Option<Value>) {
    let id_token = verify_id_token(app, rp, tokens["id_token"].as_str().expect("id_token")).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().expect("access_token"));
    let info = send(app, Method::GET, "/oidc/userinfo", &[("authorization", &bearer)], None).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text());
    (id_token.get("groups").cloned(), info.json().get("groups").cloned())
}

#[tokio::test]
async fn the_api_makes_renames_and_deletes_groups_and_every_refusal_writes_nothing() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        let base = format!("/admin/api/services/{service}/groups");
        assert_eq!(admin(&app, Method::GET, &base, None).await.json(), json!([]));
        let staff = group(&app, &service, "Staff").await;
        assert!(staff.len() == 32 && staff.bytes().all(|b| b.is_ascii_hexdigit()), "{staff}");
        let admins = group(&app, &service, "Admins").await;
        let longest = "W".repeat(64);
        group(&app, &service, &longest).await;
        let elsewhere = app.create_service("Elsewhere").await;
        let foreign = group(&app, &elsewhere, "Staff").await;
        let names = |list: Vec<(String, i64)>| list.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let before = names(listed(&app, &service).await);
        assert_eq!(before, ["Admins", "Staff", longest.as_str()], "by name");
        let records = "SELECT COUNT(*) FROM audit_event WHERE action LIKE 'group_%'";
        assert_eq!(app.count(records).await, 4);

        // Refusals, each with its code, and nothing written.
        let bad_names =
            ["", " padded", "padded ", "tab\there", "line\nbreak", "nul\u{0}byte", "del\u{7f}", "bidi\u{202e}txt"];
        let long = "x".repeat(65);
        for name in bad_names.iter().copied().chain(["zero\u{200b}width", long.as_str()]) {
            refused(
                &admin(&app, Method::POST, &base, Some(json!({"name": name}))).await,
                StatusCode::BAD_REQUEST,
                "invalid_group_name",
            );
            let rename = admin(&app, Method::PATCH, &format!("{base}/{staff}"), Some(json!({"name": name}))).await;
            refused(&rename, StatusCode::BAD_REQUEST, "invalid_group_name");
        }
        refused(
            &admin(&app, Method::POST, &base, Some(json!({"name": "Staff"}))).await,
            StatusCode::BAD_REQUEST,
            "group_name_taken",
        );
        let onto = admin(&app, Method::PATCH, &format!("{base}/{staff}"), Some(json!({"name": "Admins"}))).await;
        refused(&onto, StatusCode::BAD_REQUEST, "group_name_taken");
        for id in [foreign.as_str(), "nope", &"a".repeat(32), "x\u{0}"] {
            let path = format!("{base}/{}", urlencode(id));
            let rename = admin(&app, Method::PATCH, &path, Some(json!({"name": "Renamed"}))).await;
            refused(&rename, StatusCode::NOT_FOUND, "unknown_group");
            refused(&admin(&app, Method::DELETE, &path, None).await, StatusCode::NOT_FOUND, "unknown_group");
        }
        let unknown_member = admin(&app, Method::POST, &base, Some(json!({"name": "Ops", "colour": "red"}))).await;
        assert_eq!(unknown_member.status, StatusCode::BAD_REQUEST, "{}", unknown_member.text());
        let nowhere = admin(&app, Method::POST, "/admin/api/services/nope/groups", Some(json!({"name": "Ops"}))).await;
        refused(&nowhere, StatusCode::NOT_FOUND, "unknown_service");
        assert_eq!(names(listed(&app, &service).await), before, "no refusal changed a group");
        assert_eq!(names(listed(&app, &elsewhere).await), ["Staff"], "nor another service's");
        assert_eq!(app.count(records).await, 4, "no refusal wrote an audit record");

        // A rename keeps the id; a deletion leaves the others.
        let renamed = admin(&app, Method::PATCH, &format!("{base}/{staff}"), Some(json!({"name": "Team"}))).await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text());
        assert_eq!(
            (renamed.json()["id"].as_str(), renamed.json()["name"].as_str()),
            (Some(staff.as_str()), Some("Team"))
        );
        let deleted = admin(&app, Method::DELETE, &format!("{base}/{admins}"), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
        assert_eq!(names(listed(&app, &service).await), ["Team", longest.as_str()]);
        let audit = admin(&app, Method::GET, &format!("/admin/api/audit?service={service}&limit=2"), None).await.json();
        assert_eq!(
            (audit[0]["action"].as_str(), audit[1]["action"].as_str()),
            (Some("group_deleted"), Some("group_renamed"))
        );
        assert_eq!(audit[1]["detail"], format!("group \"Staff\" renamed \"Team\", id {staff}"));
    })
    .await;
}

#[tokio::test]
async fn an_account_s_groups_are_set_whole_and_every_refusal_writes_nothing() {
    each_backend(|app| async move {
        let service = app.create_service("Example").await;
        group(&app, &service, "Staff").await;
        group(&app, &service, "Admins").await;
        let elsewhere = app.create_service("Elsewhere").await;
        group(&app, &elsewhere, "Outsiders").await;
        add_account(&app, &service, "alice").await;
        add_account(&app, &service, "bob").await;
        add_account(&app, &elsewhere, "carol").await;

        assert_eq!(groups_of(&app, &service, "alice").await, json!([]));
        let set = set_groups(&app, &service, "alice", &["Staff", "Admins", "Staff"]).await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text());
        assert_eq!(set.json(), json!({"groups": ["Admins", "Staff"]}), "sorted, each once");
        assert_eq!(groups_of(&app, &service, "alice").await, json!(["Admins", "Staff"]));
        assert_eq!(set_groups(&app, &service, "bob", &["Staff"]).await.status, StatusCode::OK);
        assert_eq!(listed(&app, &service).await, [("Admins".to_owned(), 1), ("Staff".to_owned(), 2)]);
        let audit = admin(&app, Method::GET, "/admin/api/audit?limit=2", None).await.json();
        assert_eq!(
            (audit[1]["action"].as_str(), audit[1]["target"].as_str()),
            (Some("account_groups_changed"), Some("alice"))
        );
        assert_eq!(audit[1]["detail"], format!("service {service}, groups \"Admins\", \"Staff\""));

        let records = "SELECT COUNT(*) FROM audit_event WHERE action = 'account_groups_changed'";
        let (rows, audited) = (app.count("SELECT COUNT(*) FROM account_group").await, app.count(records).await);
        // A name that is no group here, another service's group, and names
        // no group could have: the whole set is refused.
        let long = "x".repeat(65);
        for name in ["Nope", "Outsiders", "staff", "nul\u{0}byte", "bidi\u{202e}txt", long.as_str(), ""] {
            refused(
                &set_groups(&app, &service, "alice", &["Staff", name]).await,
                StatusCode::BAD_REQUEST,
                "unknown_group",
            );
        }
        refused(&set_groups(&app, &service, "nobody", &["Staff"]).await, StatusCode::NOT_FOUND, "unknown_account");
        refused(&set_groups(&app, &service, "carol", &["Staff"]).await, StatusCode::NOT_FOUND, "unknown_account");
        refused(&set_groups(&app, &elsewhere, "alice", &["Outsiders"]).await, StatusCode::NOT_FOUND, "unknown_account");
        let nowhere =
            admin(&app, Method::PUT, "/admin/api/services/nope/accounts/alice/groups", Some(json!({"groups": []})));
        refused(&nowhere.await, StatusCode::NOT_FOUND, "unknown_service");
        let uri = format!("/admin/api/services/{service}/accounts/alice/groups");
        for body in [json!({"groups": "Staff"}), json!({"groups": ["Staff"], "extra": 1}), json!({})] {
            assert_eq!(admin(&app, Method::PUT, &uri, Some(body)).await.status, StatusCode::BAD_REQUEST);
        }
        refused(
            &admin(&app, Method::GET, &format!("/admin/api/services/{service}/accounts/nobody/groups"), None).await,
            StatusCode::NOT_FOUND,
            "unknown_account",
        );
        assert_eq!(groups_of(&app, &service, "alice").await, json!(["Admins", "Staff"]), "no refusal changed them");
        assert_eq!(app.count("SELECT COUNT(*) FROM account_group").await, rows);
        assert_eq!(app.count(records).await, audited, "no refusal wrote an audit record");

        // The empty set leaves every group.
        assert_eq!(set_groups(&app, &service, "alice", &[]).await.json(), json!({"groups": []}));
        assert_eq!(listed(&app, &service).await, [("Admins".to_owned(), 0), ("Staff".to_owned(), 1)]);
    })
    .await;
}

#[tokio::test]
async fn deleting_a_group_an_account_or_the_service_cleans_what_names_it() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        let service = rp.service;
        let staff = group(&app, &service, "Staff").await;
        group(&app, &service, "Admins").await;
        add_account(&app, &service, "alice").await;
        assert_eq!(set_groups(&app, &service, "alice", &["Staff", "Admins"]).await.status, StatusCode::OK);
        let restricted = restrict(&app, &rp, REDIRECT, "Team wiki", &["Staff"]).await;
        assert_eq!(restricted.json()["allowed_groups"], json!(["Staff"]), "{}", restricted.text());

        let gone = admin(&app, Method::DELETE, &format!("/admin/api/services/{service}/groups/{staff}"), None).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        assert_eq!(groups_of(&app, &service, "alice").await, json!(["Admins"]));
        assert_eq!(app.count("SELECT COUNT(*) FROM application_group").await, 0);
        let application = format!("/admin/api/services/{service}/applications/{}", rp.client_id);
        assert_eq!(admin(&app, Method::GET, &application, None).await.json()["allowed_groups"], json!([]));

        let account = format!("/admin/api/services/{service}/accounts/alice");
        assert_eq!(admin(&app, Method::DELETE, &account, None).await.status, StatusCode::NO_CONTENT);
        assert_eq!(app.count("SELECT COUNT(*) FROM account_group").await, 0);
        add_account(&app, &service, "alice").await;
        assert_eq!(groups_of(&app, &service, "alice").await, json!([]), "a name registered again starts in none");

        assert_eq!(set_groups(&app, &service, "alice", &["Admins"]).await.status, StatusCode::OK);
        assert_eq!(restrict(&app, &rp, REDIRECT, "Team wiki", &["Admins"]).await.status, StatusCode::OK);
        assert_eq!(
            admin(&app, Method::DELETE, &format!("/admin/api/services/{service}"), None).await.status,
            StatusCode::NO_CONTENT
        );
        for table in ["service_group", "account_group", "application_group"] {
            assert_eq!(app.count(&format!("SELECT COUNT(*) FROM {table}")).await, 0, "{table}");
        }
    })
    .await;
}

#[tokio::test]
async fn the_groups_claim_comes_exactly_with_the_groups_scope() {
    each_backend(|app| async move {
        let doc = app.get("/.well-known/openid-configuration", None).await.json();
        assert_eq!(doc["scopes_supported"], json!(["openid", "profile", "email", "groups", "offline_access"]));
        assert!(doc["claims_supported"].as_array().expect("claims").contains(&json!("groups")), "{doc}");

        let rp = client(&app, false).await;
        let (_, response) = code_for(&app, &rp, "gina").await;
        let session = session_of(&response, &rp);
        // In no group: an empty list, with the scope.
        let tokens = redeem(&app, &rp, REDIRECT, &code_with(&app, &rp, &session, "openid groups").await).await;
        assert_eq!(released(&app, &rp, &tokens).await, (Some(json!([])), Some(json!([]))));

        group(&app, &rp.service, "Staff").await;
        group(&app, &rp.service, "Admins").await;
        group(&app, &rp.service, "Ωmega").await;
        assert_eq!(set_groups(&app, &rp.service, "gina", &["Ωmega", "Staff", "Admins"]).await.status, StatusCode::OK);
        let tokens = redeem(&app, &rp, REDIRECT, &code_with(&app, &rp, &session, "openid profile email").await).await;
        assert_eq!(released(&app, &rp, &tokens).await, (None, None), "not without the scope");

        // The granted scope keeps Sesame's order; the claim is sorted.
        let tokens =
            redeem(&app, &rp, REDIRECT, &code_with(&app, &rp, &session, "offline_access groups openid email").await)
                .await;
        assert_eq!(tokens["scope"], "openid email groups offline_access");
        let all = json!(["Admins", "Staff", "Ωmega"]);
        assert_eq!(released(&app, &rp, &tokens).await, (Some(all.clone()), Some(all)));

        // A refresh reads them again; a narrowed scope leaves them out.
        assert_eq!(set_groups(&app, &rp.service, "gina", &["Staff"]).await.status, StatusCode::OK);
        let refreshed = refresh(&app, &rp, &tokens["refresh_token"], None).await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
        let refreshed = refreshed.json();
        assert_eq!(released(&app, &rp, &refreshed).await, (Some(json!(["Staff"])), Some(json!(["Staff"]))));
        let narrowed = refresh(&app, &rp, &refreshed["refresh_token"], Some("openid")).await.json();
        assert_eq!(narrowed["scope"], "openid");
        assert_eq!(released(&app, &rp, &narrowed).await, (None, None));
    })
    .await;
}

#[tokio::test]
async fn a_restricted_application_refuses_a_non_member_after_the_sign_in_and_admits_a_member() {
    each_backend(|app| async move {
        let rp = client(&app, false).await;
        group(&app, &rp.service, "Staff").await;
        group(&app, &rp.service, "Admins").await;
        let restricted = restrict(&app, &rp, REDIRECT, "Team wiki", &["Staff", "Admins"]).await;
        assert_eq!(restricted.status, StatusCode::OK, "{}", restricted.text());
        assert_eq!(restricted.json()["allowed_groups"], json!(["Admins", "Staff"]));
        let unknown = restrict(&app, &rp, REDIRECT, "Team wiki", &["Staff", "Nope"]).await;
        refused(&unknown, StatusCode::BAD_REQUEST, "unknown_group");
        let application = format!("/admin/api/services/{}/applications/{}", rp.service, rp.client_id);
        let kept = admin(&app, Method::GET, &application, None).await.json();
        assert_eq!(kept["allowed_groups"], json!(["Admins", "Staff"]), "a refused change changes nothing");

        // Nobody is refused before signing in: the login page shows.
        let shown = page(&app.get(&authorize_url(&rp, ""), None).await);
        let key = register(&app, &shown, "nina").await;
        let denied = finish(&app, &shown).await;
        assert_eq!(denied.status, StatusCode::OK, "{}", denied.text());
        assert!(
            denied.text().contains(
                "You are signed in to Example Mail as nina, but Team wiki admits only members of Admins or Staff."
            ),
            "{}",
            denied.text()
        );
        assert_eq!(denied.headers[header::CACHE_CONTROL], "no-store");
        let csp = denied.headers[header::CONTENT_SECURITY_POLICY].to_str().expect("csp");
        assert!(csp.contains("form-action 'self' https://app.example"), "{csp}");
        assert_eq!(app.count("SELECT COUNT(*) FROM oidc_code").await, 0, "no code for a non-member");
        let session = session_of(&denied, &rp);

        // Continue: back at the application with access_denied.
        let back = back_at(&continue_from(&app, &denied, &session).await, REDIRECT);
        assert_eq!(back["error"], "access_denied");
        assert!(back["error_description"].contains("group"), "{back:?}");
        assert_eq!((back["state"].as_str(), back["iss"].as_str()), ("st-123", ORIGIN));
        assert!(!back.contains_key("code"));

        // Once a member, the same request is admitted.
        assert_eq!(set_groups(&app, &rp.service, "nina", &["Staff"]).await.status, StatusCode::OK);
        let admitted = back_at(&continue_from(&app, &denied, &session).await, REDIRECT);
        let tokens = redeem(&app, &rp, REDIRECT, &admitted["code"]).await;
        let claims = verify_id_token(&app, &rp, tokens["id_token"].as_str().expect("id_token")).await;
        assert_eq!(claims["preferred_username"], "nina");

        // A member signing in through the page gets a code at once.
        let shown = page(&app.get(&authorize_url(&rp, "&prompt=login"), None).await);
        let token = app.verify(&shown.token);
        let login =
            app.post_json("/api/authenticator/login", &LoginRequest::sign(&token, &account("nina"), &key)).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text());
        assert!(back_at(&finish(&app, &shown).await, REDIRECT).contains_key("code"));
    })
    .await;
}

#[tokio::test]
async fn single_sign_on_into_a_restricted_application_checks_membership_and_so_does_a_refresh() {
    each_backend(|app| async move {
        let mail = client(&app, false).await;
        group(&app, &mail.service, "Staff").await;
        let body = json!({
            "name": "Team wiki",
            "redirect_uris": [WIKI_REDIRECT],
            "allowed_groups": ["Staff"],
            "ask_consent": false,
        });
        let made =
            admin(&app, Method::POST, &format!("/admin/api/services/{}/applications", mail.service), Some(body)).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
        assert_eq!(made.json()["allowed_groups"], json!(["Staff"]));
        let wiki = Rp {
            service: mail.service,
            client_id: made.json()["client_id"].as_str().expect("client_id").to_owned(),
            secret: made.json()["client_secret"].as_str().map(str::to_owned),
        };

        // Signed in at the mail, which admits everyone.
        let (params, response) = code_for(&app, &mail, "rosa").await;
        assert!(params.contains_key("code"));
        let session = session_of(&response, &mail);

        // The wiki refuses, with its page; with prompt=none, at once.
        let at_wiki = app.get(&asking(&wiki, WIKI_REDIRECT, "openid groups offline_access"), Some(&session)).await;
        assert_eq!(at_wiki.status, StatusCode::OK, "{}", at_wiki.text());
        assert!(at_wiki
            .text()
            .contains("You are signed in to Example Mail as rosa, but Team wiki admits only members of Staff."));
        let back = back_at(&continue_from(&app, &at_wiki, &session).await, WIKI_REDIRECT);
        assert_eq!(back["error"], "access_denied");
        let quiet = app.get(&format!("{}&prompt=none", asking(&wiki, WIKI_REDIRECT, "openid")), Some(&session)).await;
        assert_eq!(back_at(&quiet, WIKI_REDIRECT)["error"], "access_denied");

        // A member gets a code at once, and a refresh token.
        assert_eq!(set_groups(&app, &mail.service, "rosa", &["Staff"]).await.status, StatusCode::OK);
        let at_wiki = app.get(&asking(&wiki, WIKI_REDIRECT, "openid groups offline_access"), Some(&session)).await;
        let tokens = redeem(&app, &wiki, WIKI_REDIRECT, &back_at(&at_wiki, WIKI_REDIRECT)["code"]).await;
        assert_eq!(released(&app, &wiki, &tokens).await.0, Some(json!(["Staff"])));

        // Having left the group, the refresh is refused, and the token is
        // not spent: back in the group, it works.
        assert_eq!(set_groups(&app, &mail.service, "rosa", &[]).await.status, StatusCode::OK);
        let refused_refresh = refresh(&app, &wiki, &tokens["refresh_token"], None).await;
        oauth_error(&refused_refresh, StatusCode::BAD_REQUEST, "invalid_grant");
        assert!(refused_refresh.json()["error_description"].as_str().expect("description").contains("group"));
        assert_eq!(set_groups(&app, &mail.service, "rosa", &["Staff"]).await.status, StatusCode::OK);
        let again = refresh(&app, &wiki, &tokens["refresh_token"], None).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    })
    .await;
}
