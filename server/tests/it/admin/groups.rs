//! Groups on the admin page: the service page's "Groups" card and its forms
//! (add, rename, delete after the page that asks first), an account's
//! groups on the profiles page, and the groups an application admits in its
//! form; every form with its CSRF token, and every name escaped.

use super::*;

/// The id of group `name` in the API's list of `service`'s groups.
async fn group_id(h: &Harness, service: &str, name: &str) -> String {
    let list = h.api(Method::GET, &format!("/admin/api/services/{service}/groups"), None).await.json();
    let found = list.as_array().expect("a list").iter().find(|g| g["name"] == name);
    found.unwrap_or_else(|| panic!("no group {name:?} in {list}"))["id"].as_str().expect("id").to_owned()
}

async fn groups_of(h: &Harness, service: &str, account: &str) -> Value {
    h.api(Method::GET, &format!("/admin/api/services/{service}/accounts/{account}/groups"), None).await.json()["groups"]
        .clone()
}

async fn post(h: &Harness, cookie: &str, uri: &str, fields: Vec<(String, String)>) -> Reply {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.post_form(uri, Some(cookie), &fields).await
}

async fn audited(h: &Harness) -> i64 {
    h.count("SELECT COUNT(*) FROM audit_event WHERE action LIKE 'group_%' OR action = 'account_groups_changed'").await
}

#[tokio::test]
async fn page_adds_renames_and_deletes_groups_and_sets_an_account_s() {
    let h = harness().await;
    let service = h.create("Example").await["id"].as_str().expect("id").to_owned();
    h.add_account(&service, "alice", START as i64, None).await;
    let (cookie, csrf) = h.sign_in().await;
    let service_page = format!("/admin/services/{service}");
    let page = h.page(&service_page, Some(&cookie)).await;
    assert!(page.text.contains(r#"<div class="card" id="groups">"#), "{}", page.text);
    assert!(page.text.contains("No groups yet."), "{}", page.text);

    // Added, with the name trimmed and shown escaped.
    let add = format!("/admin/services/{service}/groups");
    let made = h.post_form(&add, Some(&cookie), &[("csrf", &csrf), ("name", &format!("  {XSS}  "))]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
    assert_eq!(made.location(), format!("{service_page}?done=group_created"));
    let xss = group_id(&h, &service, XSS).await;
    let staff = h.post_form(&add, Some(&cookie), &[("csrf", &csrf), ("name", "Staff")]).await;
    assert_eq!(staff.status, StatusCode::SEE_OTHER, "{}", staff.text);
    let staff = group_id(&h, &service, "Staff").await;
    let page = h.page(&format!("{service_page}?done=group_created"), Some(&cookie)).await;
    assert!(page.text.contains("Group added."), "{}", page.text);
    assert!(!page.text.contains(XSS), "names are escaped: {}", page.text);
    assert!(page.text.contains(&format!(r#"data-group-id="{xss}""#)), "{}", page.text);
    assert!(page.text.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{}", page.text);

    // Renamed; refusals write nothing.
    let records = audited(&h).await;
    let rename = format!("/admin/services/{service}/groups/{xss}");
    for (fields, status) in [
        (vec![("csrf", csrf.as_str()), ("name", "Staff")], StatusCode::BAD_REQUEST),
        (vec![("csrf", csrf.as_str()), ("name", "bidi\u{202e}txt")], StatusCode::BAD_REQUEST),
        (vec![("csrf", csrf.as_str()), ("name", "")], StatusCode::BAD_REQUEST),
        (vec![("csrf", "forged"), ("name", "Admins")], StatusCode::FORBIDDEN),
    ] {
        assert_eq!(h.post_form(&rename, Some(&cookie), &fields).await.status, status, "{fields:?}");
    }
    let cross = h
        .post_form_from(&rename, Some(&cookie), &[("csrf", &csrf), ("name", "Admins")], Some("https://evil.example"))
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.post_form(&rename, None, &[("csrf", &csrf), ("name", "Admins")]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(audited(&h).await, records);
    let renamed = h.post_form(&rename, Some(&cookie), &[("csrf", &csrf), ("name", " Admins ")]).await;
    assert_eq!(renamed.location(), format!("{service_page}?done=group_renamed"));
    assert_eq!(group_id(&h, &service, "Admins").await, xss, "a rename keeps the id");

    // An account's groups, on its profile: a checkbox per group.
    let profile = h.page(&format!("/admin/services/{service}/profiles?name=alice"), Some(&cookie)).await;
    assert!(profile.text.contains(&format!(r#"name="group.{staff}" value="Staff">"#)), "{}", profile.text);
    let form = format!("/admin/services/{service}/accounts/groups");
    let (staff_field, admins_field) = (format!("group.{staff}"), format!("group.{xss}"));
    let ticked = [("csrf", csrf.as_str()), ("name", "alice"), (&staff_field, "Staff"), (&admins_field, "Admins")];
    let saved = h.post_form(&form, Some(&cookie), &ticked).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(saved.location(), format!("/admin/services/{service}/profiles?name=alice&done=groups_saved"));
    assert_eq!(groups_of(&h, &service, "alice").await, json!(["Admins", "Staff"]));
    let shown = h.page(saved.location(), Some(&cookie)).await;
    assert!(shown.text.contains("Groups saved."), "{}", shown.text);
    assert!(shown.text.contains(&format!(r#"name="group.{staff}" value="Staff" checked>"#)), "{}", shown.text);
    let page = h.page(&service_page, Some(&cookie)).await;
    assert!(page.text.contains("· 1 member</span>"), "{}", page.text);
    let records = audited(&h).await;
    for (fields, status) in [
        (vec![("csrf", csrf.as_str()), ("name", "nobody"), (&staff_field, "Staff")], StatusCode::NOT_FOUND),
        (vec![("csrf", csrf.as_str()), ("name", "alice"), (&staff_field, "Gone")], StatusCode::BAD_REQUEST),
        (vec![("csrf", "forged"), ("name", "alice")], StatusCode::FORBIDDEN),
    ] {
        assert_eq!(h.post_form(&form, Some(&cookie), &fields).await.status, status, "{fields:?}");
    }
    assert_eq!(audited(&h).await, records);
    assert_eq!(groups_of(&h, &service, "alice").await, json!(["Admins", "Staff"]));
    // Unticked: no longer in that group.
    let none = h.post_form(&form, Some(&cookie), &[("csrf", &csrf), ("name", "alice"), (&staff_field, "Staff")]).await;
    assert_eq!(none.status, StatusCode::SEE_OTHER);
    assert_eq!(groups_of(&h, &service, "alice").await, json!(["Staff"]));

    // Deleted after the page that asks first.
    let delete = format!("/admin/services/{service}/groups/{staff}/delete");
    let asked = h.post_form(&delete, Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    assert!(asked.text.contains("Delete this group?") && asked.text.contains("1 membership"), "{}", asked.text);
    assert_eq!(groups_of(&h, &service, "alice").await, json!(["Staff"]), "asking deletes nothing");
    let gone = h.post_form(&delete, Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
    assert_eq!(gone.location(), format!("{service_page}?done=group_deleted"));
    assert_eq!(groups_of(&h, &service, "alice").await, json!([]));
    let again = h.post_form(&delete, Some(&cookie), &[("csrf", &csrf), CONFIRMED]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let audit = h.api(Method::GET, &format!("/admin/api/audit?service={service}&limit=1"), None).await.json();
    assert_eq!(audit[0]["action"], "group_deleted");
    assert!(audit[0]["actor"].as_str().is_some_and(|a| a.starts_with("token")), "{audit}");
}

#[tokio::test]
async fn the_application_form_sets_the_groups_it_admits() {
    let h = harness().await;
    let service = h.create("Example").await["id"].as_str().expect("id").to_owned();
    let (cookie, csrf) = h.sign_in().await;
    let service_page = format!("/admin/services/{service}");
    let page = h.page(&service_page, Some(&cookie)).await;
    assert!(page.text.contains("Every account of the service. Add groups under Groups"), "{}", page.text);
    let add = format!("/admin/services/{service}/groups");
    for name in ["Staff", "Admins"] {
        assert_eq!(
            h.post_form(&add, Some(&cookie), &[("csrf", &csrf), ("name", name)]).await.status,
            StatusCode::SEE_OTHER
        );
    }
    let staff = group_id(&h, &service, "Staff").await;
    let field = format!("allowed_group.{staff}");
    let page = h.page(&service_page, Some(&cookie)).await;
    assert!(page.text.contains(&format!(r#"name="{field}" value="Staff">"#)), "{}", page.text);

    let app_form = |name: &'static str, ticked: bool| {
        let mut fields = vec![
            ("csrf".to_owned(), csrf.clone()),
            ("name".to_owned(), name.to_owned()),
            ("redirect_uris".to_owned(), "com.example.app:/callback".to_owned()),
            ("public".to_owned(), "1".to_owned()),
            ("alg".to_owned(), "RS256".to_owned()),
        ];
        if ticked {
            fields.push((field.clone(), "Staff".to_owned()));
        }
        fields
    };
    let made = post(&h, &cookie, &format!("{service_page}/applications"), app_form("Wiki", true)).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
    let listed = h.api(Method::GET, &format!("/admin/api/services/{service}/applications"), None).await.json();
    assert_eq!(listed[0]["allowed_groups"], json!(["Staff"]));
    let client_id = listed[0]["client_id"].as_str().expect("client_id").to_owned();
    let page = h.page(&service_page, Some(&cookie)).await;
    assert!(page.text.contains(r#"<span data-field="allowed-groups">only members of Staff</span>"#), "{}", page.text);
    assert!(page.text.contains(&format!(r#"name="{field}" value="Staff" checked>"#)), "{}", page.text);

    // A group that went meanwhile refuses the form, and nothing changes.
    let mut stale = app_form("Wiki", true);
    stale.push(("allowed_group.0123".to_owned(), "Gone".to_owned()));
    let refused = post(&h, &cookie, &format!("{service_page}/applications/{client_id}"), stale).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    // Nothing ticked: every account.
    let changed = post(&h, &cookie, &format!("{service_page}/applications/{client_id}"), app_form("Wiki", false)).await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    let one = h.api(Method::GET, &format!("/admin/api/services/{service}/applications/{client_id}"), None).await;
    assert_eq!(one.json()["allowed_groups"], json!([]));
    let audit = h.api(Method::GET, "/admin/api/audit?limit=1", None).await.json();
    assert!(audit[0]["detail"].as_str().is_some_and(|d| d.ends_with("admits every account")), "{audit}");
}
