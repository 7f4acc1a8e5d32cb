//! The "Passkeys" card of a service's admin page: which kinds of key sign
//! in, and whether a passkey must verify its user.

use super::*;

#[tokio::test]
async fn the_service_page_sets_the_kinds_of_key_and_user_verification() {
    let h = harness().await;
    let id = h.create("Example").await["id"].as_str().expect("id").to_owned();
    let (cookie, csrf) = h.sign_in().await;
    let page = h.page(&format!("/admin/services/{id}"), Some(&cookie)).await;
    assert!(page.text.contains(r#"<option value="sesame" selected>"#), "Sesame keys only to start with");

    let uri = format!("/admin/services/{id}/passkeys");
    let fields = [("csrf", csrf.as_str()), ("key_kinds", "both"), ("require_user_verification", "1")];
    let reply = h.post_form(&uri, Some(&cookie), &fields).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.location(), format!("/admin/services/{id}?done=key_kinds_changed"));
    let service = h.api(Method::PATCH, &format!("/admin/api/services/{id}"), Some(json!({}))).await.json();
    assert_eq!(
        (service["key_kinds"].clone(), service["require_user_verification"].clone()),
        (json!("both"), json!(true))
    );
    let page = h.page(&format!("/admin/services/{id}"), Some(&cookie)).await;
    assert!(page.text.contains(r#"<option value="both" selected>"#), "{}", page.text);
    assert!(page.text.contains(r#"name="require_user_verification" value="1" checked"#));

    // An unticked box turns the requirement off; a kind that is none is
    // refused, and a form without the session's token changes nothing.
    let fields = [("csrf", csrf.as_str()), ("key_kinds", "passkey")];
    assert_eq!(h.post_form(&uri, Some(&cookie), &fields).await.status, StatusCode::SEE_OTHER);
    let fields = [("csrf", csrf.as_str()), ("key_kinds", "keys")];
    assert_eq!(h.post_form(&uri, Some(&cookie), &fields).await.status, StatusCode::BAD_REQUEST);
    let fields = [("csrf", "forged"), ("key_kinds", "sesame")];
    assert_ne!(h.post_form(&uri, Some(&cookie), &fields).await.status, StatusCode::SEE_OTHER);
    let service = h.api(Method::PATCH, &format!("/admin/api/services/{id}"), Some(json!({}))).await.json();
    assert_eq!(
        (service["key_kinds"].clone(), service["require_user_verification"].clone()),
        (json!("passkey"), json!(false))
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM audit_event WHERE action = 'service_changed'").await, 2);
}
