//! The audit log: every admin action writes exactly one record naming who,
//! what and to what, through the real handlers on both databases; the API
//! pages through it; the page escapes it; no secret ever lands in it.

use sesame_proto::AccountKey;

use super::{
    authenticator::{add, register, sign_in_with, Adding},
    *,
};

/// The records, newest first, as `(actor, action, target)`, read through
/// the API.
async fn audit(h: &Harness) -> Vec<(String, String, String)> {
    let reply = h.api(Method::GET, "/admin/api/audit?limit=500", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            let field = |name: &str| e[name].as_str().unwrap_or_else(|| panic!("no {name} in {e}")).to_owned();
            (field("actor"), field("action"), field("target"))
        })
        .collect()
}

fn row(actor: &str, action: &str, target: &str) -> (String, String, String) {
    (actor.to_owned(), action.to_owned(), target.to_owned())
}

/// The handle (hex of the cookie's hash) the sessions list shows for a
/// session cookie `sesame_admin=<value>`.
fn handle_of(cookie: &str) -> String {
    let value = cookie.strip_prefix("sesame_admin=").expect("a session cookie");
    hex::encode(sesame_server::http::cookie::digest(value))
}

#[tokio::test]
async fn each_api_action_writes_one_record_with_the_token_as_actor() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let id = h.create("Mail").await["id"].as_str().expect("id").to_owned();
        h.add_account(&id, "alice", START as i64, None).await;
        let deleted = h.api(Method::DELETE, &format!("/admin/api/services/{id}/accounts/alice"), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let gone = h.api(Method::DELETE, &format!("/admin/api/services/{id}"), None).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        // A refused action changes nothing and records nothing.
        let again = h.api(Method::DELETE, &format!("/admin/api/services/{id}"), None).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);

        assert_eq!(
            audit(&h).await,
            vec![
                row("token", "service_deleted", &id),
                row("token", "account_deleted", "alice"),
                row("token", "service_created", &id),
            ]
        );
        let newest = &h.api(Method::GET, "/admin/api/audit?limit=3", None).await.json()[2];
        assert_eq!(newest["detail"], "Mail");
        assert_eq!(newest["ip"], "0.0.0.0");
        assert_eq!(newest["at"], "2026-01-01T00:00:00Z");
    })
    .await;
}

#[tokio::test]
async fn a_change_whose_record_cannot_be_written_is_not_made() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        sqlx::query("DROP TABLE audit_event").execute(&h.sql).await.expect("drop the audit table");
        let reply = h.api(Method::POST, "/admin/api/services", Some(json!({"name": "Mail"}))).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", reply.text);
        assert_eq!(reply.error_code(), "internal");
        assert_eq!(h.count("SELECT COUNT(*) FROM service WHERE NOT builtin").await, 0);
    })
    .await;
}

#[tokio::test]
async fn each_page_action_writes_one_record_with_the_session_as_actor() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let (mine, csrf) = h.sign_in().await;
        let (theirs, _) = h.sign_in().await;
        let created = h.post_form("/admin/services", Some(&mine), &[("csrf", &csrf), ("name", "Mail")]).await;
        assert_eq!(created.location(), "/admin?done=created");
        let id: String = sqlx::query_scalar("SELECT id FROM service WHERE name = 'Mail'")
            .fetch_one(&h.sql)
            .await
            .expect("the new service");
        h.add_account(&id, "bob", START as i64, None).await;
        let path = format!("/admin/services/{id}/accounts/delete");
        h.post_form(&path, Some(&mine), &[("csrf", &csrf), ("name", "bob"), ("confirmed", "yes")]).await;
        let delete = format!("/admin/services/{id}/delete");
        h.post_form(&delete, Some(&mine), &[("csrf", &csrf), ("confirmed", "yes")]).await;
        let other = handle_of(&theirs);
        h.post_form("/admin/sessions/end", Some(&mine), &[("csrf", &csrf), ("handle", &other)]).await;
        let out = h.post_form("/admin/signout", Some(&mine), &[("csrf", &csrf)]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);

        assert_eq!(
            audit(&h).await,
            vec![
                row("token", "admin_signed_out", &handle_of(&mine)),
                row("token", "admin_session_ended", &other),
                row("token", "service_deleted", &id),
                row("token", "account_deleted", "bob"),
                row("token", "service_created", &id),
                row("token", "admin_signed_in", &other),
                row("token", "admin_signed_in", &handle_of(&mine)),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn authenticator_actions_name_the_authenticator_that_did_them() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let laptop = AccountKey::generate(&mut OsRng);
        add(&h, "laptop", &laptop).await;
        let by_key = sign_in_with(&h, "laptop", &laptop).await;
        let csrf = hidden_csrf(&h.page("/admin", Some(&by_key)).await.text);
        // Someone else's key, refused at confirmation.
        let adding = Adding::start(&h).await;
        let reply = register(&h, &adding.token(), "intruder", &AccountKey::generate(&mut OsRng)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(adding.reject(&h).await.location(), "/admin?done=authenticator_rejected");
        let removed = h
            .post_form("/admin/authenticators/delete", Some(&by_key), &[("csrf", &csrf), ("name", "laptop"), CONFIRMED])
            .await;
        assert_eq!(removed.location(), "/admin?done=authenticator_removed");

        let records = audit(&h).await;
        let actions: Vec<(String, String, String)> =
            records.into_iter().filter(|(_, action, _)| action != "admin_signed_in").collect();
        assert_eq!(
            actions,
            vec![
                row("authenticator:laptop", "authenticator_removed", "laptop"),
                row("token", "authenticator_refused", "intruder"),
                row("authenticator:intruder", "authenticator_added", "intruder"),
                row("token", "authenticator_confirmed", "laptop"),
                row("authenticator:laptop", "authenticator_added", "laptop"),
            ]
        );
        let signed_in = h
            .count(
                "SELECT COUNT(*) FROM audit_event WHERE action = 'admin_signed_in' \
                 AND actor = 'authenticator:laptop'",
            )
            .await;
        assert_eq!(signed_in, 1);
    })
    .await;
}

#[tokio::test]
async fn a_refused_sign_in_is_recorded_without_what_was_typed() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let typed = "test-admin-token-0123456780";
        let (pre_cookie, pre_csrf) = h.sign_in_form().await;
        let reply = h.post_form("/admin/signin", Some(&pre_cookie), &[("csrf", &pre_csrf), ("token", typed)]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

        assert_eq!(audit(&h).await, vec![row("anonymous", "admin_sign_in_refused", "")]);
        // Neither what was typed, nor the real token, nor the form's CSRF
        // value is anywhere in the record.
        for secret in [typed, TOKEN, pre_csrf.as_str()] {
            let found = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM audit_event WHERE actor || action || target || detail || ip || user_agent \
                 LIKE '%' || $1 || '%'",
            )
            .bind(secret.to_owned())
            .fetch_one(&h.sql)
            .await
            .expect("search");
            assert_eq!(found, 0, "{secret} was recorded");
        }
    })
    .await;
}

/// Writes `n` records straight into the table, `service_created` of `s1`,
/// `s2`, ….
async fn records(h: &Harness, n: usize) {
    for i in 1..=n {
        sqlx::query(
            "INSERT INTO audit_event (at, actor, action, target, detail, ip, user_agent) \
             VALUES ($1, 'token', 'service_created', $2, '', '127.0.0.1', 'ua')",
        )
        .bind(START as i64)
        .bind(format!("s{i}"))
        .execute(&h.sql)
        .await
        .expect("insert a record");
    }
}

fn targets(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json().as_array().expect("array").iter().map(|e| e["target"].as_str().expect("target").to_owned()).collect()
}

#[tokio::test]
async fn the_audit_api_pages_back_from_the_newest_with_before_and_limit() {
    let h = harness().await;
    records(&h, 60).await;
    let first = h.api(Method::GET, "/admin/api/audit", None).await;
    let all = targets(&first);
    assert_eq!(all.len(), 50, "the default page is 50");
    assert_eq!((all[0].as_str(), all[49].as_str()), ("s60", "s11"));

    let page = h.api(Method::GET, "/admin/api/audit?limit=4", None).await;
    assert_eq!(targets(&page), ["s60", "s59", "s58", "s57"]);
    let last_id = page.json()[3]["id"].as_i64().expect("id");
    let next = h.api(Method::GET, &format!("/admin/api/audit?limit=4&before={last_id}"), None).await;
    assert_eq!(targets(&next), ["s56", "s55", "s54", "s53"]);
    let oldest = h.api(Method::GET, "/admin/api/audit?before=3&limit=500", None).await;
    assert_eq!(targets(&oldest), ["s2", "s1"]);
    let past = h.api(Method::GET, "/admin/api/audit?before=1", None).await;
    assert_eq!(targets(&past), Vec::<String>::new());
}

#[tokio::test]
async fn the_audit_api_refuses_bad_paging_with_400_and_strangers_with_401() {
    let h = harness().await;
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("limit=-1", "invalid_limit"),
        ("limit=ten", "invalid_query"),
        ("before=abc", "invalid_query"),
        ("before=", "invalid_query"),
    ] {
        let reply = h.api(Method::GET, &format!("/admin/api/audit?{query}"), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {}", reply.text);
        assert_eq!(reply.error_code(), code, "{query}");
    }
    let stranger = h.api_with(Method::GET, "/admin/api/audit", None, None).await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stranger.error_code(), "unauthorized");
}

#[tokio::test]
async fn the_admin_page_shows_the_newest_fifty_records_escaped() {
    let h = harness().await;
    records(&h, 55).await;
    h.create(XSS).await;
    let (cookie, _) = h.sign_in().await;
    let page = h.page("/admin", Some(&cookie)).await.text;
    let table = &page[page.find(r#"<table id="audit">"#).expect("the audit log")..];
    let table = &table[..table.find("</table>").expect("end of table")];
    // The sign-in and the service are the newest two; s55 down to s8 follow.
    assert_eq!(table.matches("<tr>").count(), 1 + 50, "{table}");
    assert!(table.contains("admin_signed_in"));
    // Askama writes `<` and `>` as `&#60;` and `&#62;`.
    assert!(table.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{table}");
    assert!(!table.contains(XSS));
    assert!(table.contains(">s8<") && !table.contains(">s7<"), "only the newest fifty");
}

/// The records the API lists for `query`.
async fn listed(h: &Harness, query: &str) -> Vec<Value> {
    let reply = h.api(Method::GET, &format!("/admin/api/audit?{query}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json().as_array().expect("an array").clone()
}

/// The audit log page lists every action a page at a time, filtered by
/// action, actor and service, names the services it touched, and escapes
/// what it shows; the API takes the same filters.
#[tokio::test]
async fn the_audit_log_filters_by_action_actor_and_service_and_names_services() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let bakery = h.create(XSS).await;
        let bakery = bakery["id"].as_str().expect("id").to_owned();
        let garage = h.create("Garage").await;
        let garage = garage["id"].as_str().expect("id").to_owned();
        let patch = h
            .api(Method::PATCH, &format!("/admin/api/services/{garage}"), Some(json!({"number_matching": true})))
            .await;
        assert_eq!(patch.status, StatusCode::OK, "{}", patch.text);

        // The API: by service, by action, by actor; the service's name comes along.
        let of_garage = listed(&h, &format!("service={garage}")).await;
        let actions: Vec<&str> = of_garage.iter().map(|e| e["action"].as_str().expect("action")).collect();
        assert_eq!(actions, ["service_changed", "service_created"]);
        assert_eq!(of_garage[0]["target_name"], "Garage");
        let created = listed(&h, "action=service_created").await;
        assert_eq!(created.len(), 2, "{created:?}");
        assert!(listed(&h, "actor=anonymous").await.is_empty());
        assert_eq!(listed(&h, "actor=token&action=service_changed").await.len(), 1);

        // The page: the same filters, the names, and nothing raw.
        let anonymous = h.page("/admin/audit", None).await;
        assert_eq!((anonymous.status, anonymous.location()), (StatusCode::SEE_OTHER, "/admin"));
        let (cookie, _) = h.sign_in().await;
        let page = h.page(&format!("/admin/audit?service={bakery}&action=&actor="), Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        let shown = |action: &str| page.text.contains(&format!("<td>{action}</td>"));
        assert!(shown("service_created") && !shown("service_changed"), "{}", page.text);
        assert!(
            !page.text.contains(XSS) && page.text.contains("&#60;script&#62;"),
            "the name is escaped: {}",
            page.text
        );
        let page = h.page("/admin/audit?action=service_changed", Some(&cookie)).await;
        assert!(page.text.contains("Garage") && !page.text.contains("service_created</td>"), "{}", page.text);
        let refused = h.page("/admin/audit?before=soon", Some(&cookie)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    })
    .await;
}
