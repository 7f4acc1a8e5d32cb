//! An account's keys and recovery links on the admin page: each key with a
//! Remove button, and a recovery link shown once on a page nobody caches.

use super::*;

/// A service with account alice (one key); returns the service id, the
/// session cookie and the CSRF token of a signed-in admin.
async fn signed_in_with_alice(h: &Harness) -> (String, String, String) {
    let service = h.create("Example").await["id"].as_str().expect("id").to_owned();
    h.add_account(&service, "alice", START as i64, None).await;
    let (cookie, csrf) = h.sign_in().await;
    (service, cookie, csrf)
}

#[tokio::test]
async fn page_makes_a_recovery_link_and_shows_it_once_uncached() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let (service, cookie, csrf) = signed_in_with_alice(&h).await;
        let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        assert!(page.text.contains(&format!(r#"action="/admin/services/{service}/recovery""#)), "{}", page.text);
        assert!(page.text.contains("Remove the account's other keys when it is used"), "{}", page.text);

        let uri = format!("/admin/services/{service}/recovery");
        let fields = [("csrf", csrf.as_str()), ("name", "alice"), ("ttl_secs", "3600"), ("revoke_other_keys", "1")];
        let made = h.post_form(&uri, Some(&cookie), &fields).await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.text);
        assert_eq!(made.headers[header::CACHE_CONTROL], "no-store");
        assert!(made.text.contains("This link is shown only once"), "{}", made.text);
        let url = made
            .text
            .split(r#"<code id="recovery-url" class="token">"#)
            .nth(1)
            .expect("the URL")
            .split('<')
            .next()
            .expect("end");
        assert!(url.starts_with(&format!("{}/services/{service}/recover/", h.state.settings.origin)), "{url}");
        assert!(made.text.contains("2026-01-01T01:00:00Z"), "an hour from now: {}", made.text);
        let secret = url.rsplit('/').next().expect("secret");
        let origin = h.state.settings.origin.to_string();

        // It is a working link, listed without its secret, and never shown again.
        let opened = h.page(url.strip_prefix(origin.as_str()).expect("our origin"), None).await;
        assert_eq!(opened.status, StatusCode::OK, "{}", opened.text);
        let listed =
            h.api(Method::GET, &format!("/admin/api/services/{service}/accounts/alice/enrollments"), None).await;
        assert_eq!(
            (listed.json()[0]["state"].as_str(), listed.json()[0]["revoke_other_keys"].as_bool()),
            (Some("active"), Some(true))
        );
        let again = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        assert!(!again.text.contains(secret) && !listed.text.contains(secret));
        let audit = h.api(Method::GET, "/admin/api/audit?limit=1", None).await.json();
        assert_eq!(audit[0]["action"], "recovery_link_created");
        assert!(audit[0]["actor"].as_str().is_some_and(|a| a == "token"), "{audit}");
    })
    .await;
}

#[tokio::test]
async fn page_refuses_recovery_links_without_csrf_or_with_a_bad_lifetime_and_writes_nothing() {
    let h = harness().await;
    let (service, cookie, csrf) = signed_in_with_alice(&h).await;
    let uri = format!("/admin/services/{service}/recovery");
    let forged = h.post_form(&uri, Some(&cookie), &[("csrf", "nope"), ("name", "alice"), ("ttl_secs", "3600")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let cross = h
        .post_form_from(
            &uri,
            Some(&cookie),
            &[("csrf", &csrf), ("name", "alice"), ("ttl_secs", "3600")],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.text);
    let anonymous = h.post_form(&uri, None, &[("csrf", &csrf), ("name", "alice"), ("ttl_secs", "3600")]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
    for ttl in ["86401", "59", "a day", ""] {
        let refused = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "alice"), ("ttl_secs", ttl)]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{ttl:?}: {}", refused.text);
    }
    let unknown = h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "bob"), ("ttl_secs", "3600")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM account_recovery").await, 0);
}

#[tokio::test]
async fn page_lists_an_accounts_keys_and_removes_one() {
    let h = harness().await;
    let (service, cookie, csrf) = signed_in_with_alice(&h).await;
    let key_id: String = sqlx::query_scalar("SELECT id FROM account_key WHERE account = 'alice'")
        .fetch_one(&h.sql)
        .await
        .expect("alice's key");
    let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
    assert!(page.text.contains(&format!(r#"name="key_id" value="{key_id}""#)), "{}", page.text);
    assert!(page.text.contains("Authenticators and recovery"));

    let uri = format!("/admin/services/{service}/keys/remove");
    let forged = h.post_form(&uri, Some(&cookie), &[("csrf", "nope"), ("name", "alice"), ("key_id", &key_id)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let removed =
        h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "alice"), ("key_id", &key_id), CONFIRMED]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
    assert_eq!(removed.location(), format!("/admin/services/{service}?done=key_removed"));
    assert_eq!(h.count("SELECT COUNT(*) FROM account_key").await, 0);
    let again =
        h.post_form(&uri, Some(&cookie), &[("csrf", &csrf), ("name", "alice"), ("key_id", &key_id), CONFIRMED]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let page = h.page(&format!("/admin/services/{service}?done=key_removed"), Some(&cookie)).await;
    assert!(page.text.contains("Key removed"), "{}", page.text);
    assert!(page.text.contains("No keys: this account cannot sign in"), "{}", page.text);
}

/// The page lists every account with its own keys (read in one query for
/// the whole service), and an account without keys as such.
#[tokio::test]
async fn page_lists_each_accounts_keys_under_that_account() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let (service, cookie, _) = signed_in_with_alice(&h).await;
        h.add_account(&service, "bob", START as i64 + 1, None).await;
        h.add_account(&service, "carol", START as i64 + 2, None).await;
        sqlx::query("DELETE FROM account_key WHERE account = 'carol'").execute(&h.sql).await.expect("take carol's key");
        let ids = |account: &'static str| {
            let pool = h.sql.clone();
            async move {
                sqlx::query_scalar::<_, String>("SELECT id FROM account_key WHERE account = $1")
                    .bind(account)
                    .fetch_one(&pool)
                    .await
                    .expect("a key")
            }
        };
        let (alice, bob) = (ids("alice").await, ids("bob").await);

        let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        let section = |name: &str| {
            let start = page.text.find(&format!("<h3>{name}</h3>")).unwrap_or_else(|| panic!("{name}: {}", page.text));
            let rest = &page.text[start..];
            rest[..rest[4..].find("<h3>").map_or(rest.len(), |end| end + 4)].to_owned()
        };
        assert!(section("alice").contains(&alice) && !section("alice").contains(&bob), "{}", section("alice"));
        assert!(section("bob").contains(&bob) && !section("bob").contains(&alice), "{}", section("bob"));
        assert!(section("carol").contains("No keys: this account cannot sign in"), "{}", section("carol"));
    })
    .await;
}

/// The page lists the recovery links that can still be used (not their
/// secrets), and revokes one with its CSRF token: the link then opens
/// nothing, the revocation is audited, and a link past its expiry is not
/// listed.
#[tokio::test]
async fn page_lists_usable_recovery_links_and_revokes_one() {
    support::each_backend(|app| async move {
        let h = Harness::over(app);
        let (service, cookie, csrf) = signed_in_with_alice(&h).await;
        let make = [("csrf", csrf.as_str()), ("name", "alice"), ("ttl_secs", "3600")];
        let made = h.post_form(&format!("/admin/services/{service}/recovery"), Some(&cookie), &make).await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.text);
        let url = made.text.split(r#"<code id="recovery-url" class="token">"#).nth(1).expect("the URL");
        let link_path = url.split('<').next().expect("end").replace(&h.state.settings.origin.to_string(), "");
        let links_uri = format!("/admin/api/services/{service}/accounts/alice/enrollments");
        let link_id = h.api(Method::GET, &links_uri, None).await.json()[0]["id"].as_str().expect("id").to_owned();

        let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        assert!(page.text.contains(&format!(r#"name="link_id" value="{link_id}""#)), "{}", page.text);
        assert!(page.text.contains("2026-01-01T01:00:00Z"), "its expiry: {}", page.text);
        let secret = link_path.rsplit('/').next().expect("secret");
        assert!(!page.text.contains(secret), "the page shows a link's secret");

        let uri = format!("/admin/services/{service}/recovery/revoke");
        let link = link_id.as_str();
        let fields = |csrf| [("csrf", csrf), ("name", "alice"), ("link_id", link)];
        let forged = h.post_form(&uri, Some(&cookie), &fields("nope")).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
        let anonymous = h.post_form(&uri, None, &fields(csrf.as_str())).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
        assert_eq!(h.api(Method::GET, &links_uri, None).await.json()[0]["state"], "active");

        let revoked = h.post_form(&uri, Some(&cookie), &fields(csrf.as_str())).await;
        assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.text);
        assert_eq!(revoked.location(), format!("/admin/services/{service}?done=link_revoked"));
        assert_eq!(h.api(Method::GET, &links_uri, None).await.json()[0]["state"], "revoked");
        let audit = h.api(Method::GET, "/admin/api/audit?limit=1", None).await.json();
        assert_eq!(audit[0]["action"], "recovery_link_revoked", "{audit}");
        let page = h.page(&format!("/admin/services/{service}?done=link_revoked"), Some(&cookie)).await;
        assert!(page.text.contains("Recovery link revoked"), "{}", page.text);
        assert!(!page.text.contains(&format!(r#"value="{link_id}""#)), "a revoked link is still listed");
        let opened = h.page(&link_path, None).await;
        assert_eq!(opened.status, StatusCode::NOT_FOUND, "{}", opened.text);
        // Revoked once; a second time there is no such usable link.
        let again = h.post_form(&uri, Some(&cookie), &fields(csrf.as_str())).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);

        // A link past its expiry can no longer be used, and is not listed.
        let made = h.post_form(&format!("/admin/services/{service}/recovery"), Some(&cookie), &make).await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.text);
        sqlx::query("UPDATE account_recovery SET expires_at = $1 WHERE revoked_at IS NULL")
            .bind(START as i64)
            .execute(&h.sql)
            .await
            .expect("expire the link");
        let page = h.page(&format!("/admin/services/{service}"), Some(&cookie)).await;
        assert!(!page.text.contains(r#"name="link_id""#), "an expired link is listed: {}", page.text);
    })
    .await;
}

/// On PostgreSQL an account deleted while a recovery link for it is made
/// breaks the link's foreign key: that must read as an unknown account, not
/// a server error, and leave no link.
#[tokio::test]
async fn a_recovery_link_for_an_account_deleted_meanwhile_on_postgres_is_unknown_account() {
    let Some(app) = support::postgres_for_a_race().await else { return };
    let cleanup = app.cleanup_handle();
    let h = Harness::over(app);
    let (service, cookie, csrf) = signed_in_with_alice(&h).await;
    let mut deleting = h.sql.begin().await.expect("begin");
    sqlx::query("DELETE FROM account WHERE name = 'alice'").execute(&mut *deleting).await.expect("delete alice");
    let uri = format!("/admin/services/{service}/recovery");
    let fields = [("csrf", csrf.as_str()), ("name", "alice"), ("ttl_secs", "3600")];
    let (made, ()) = tokio::join!(h.post_form(&uri, Some(&cookie), &fields), async {
        support::until_waiting_on_locks(&h.sql, 1).await;
        deleting.commit().await.expect("commit the deletion");
    });
    assert_eq!(made.status, StatusCode::NOT_FOUND, "{}", made.text);
    assert!(made.text.contains("no such account at this service"), "{}", made.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM account_recovery").await, 0);
    drop(h);
    cleanup.run().await;
}
