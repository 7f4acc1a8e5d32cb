//! The admin console's layout, in Chromium, at a phone's width and a
//! laptop's, with the longest and most hostile names the server takes: no
//! page is wider than the window, and nothing sticks out of its card. Each
//! page at each width is kept as a screenshot.

use std::time::Duration;

use anyhow::ensure;
use fantoccini::Locator;
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sesame_proto::{AccountKey, AccountName};
use sesame_tests::{Chrome, Result, Server, ADMIN_TOKEN};

/// The longest names the server takes (64 bytes), of the widest letters, of
/// a wide script, and with markup.
const NAMES: [&str; 3] = [
    "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW",
    "長い名前のサービス長い名前のサービス長い名",
    "<b>x</b><script>alert(1)</script>\"'&<i>WWWWWWWWWWWWWWWWWWWWWWW",
];

/// What sticks out: the page beyond the window, or an element beyond its
/// card (unless it sits in a box that scrolls sideways on purpose).
pub(crate) const OVERFLOW: &str = r#"
const width = document.documentElement.clientWidth;
const found = [];
if (document.documentElement.scrollWidth > width + 1) {
  found.push('the page is ' + document.documentElement.scrollWidth + ' px wide in a ' + width + ' px window');
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('.scroll') && el.closest('.scroll') !== el) continue;
    const r = el.getBoundingClientRect();
    if (r.right > width + 1 && found.length < 12) {
      found.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' reaches ' + Math.round(r.right) + ' px');
    }
  }
}
for (const card of document.querySelectorAll('.card')) {
  const box = card.getBoundingClientRect();
  for (const el of card.querySelectorAll('*')) {
    const scroller = el.parentElement && el.parentElement.closest('.scroll');
    if (scroller && card.contains(scroller)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    // Text wider than its own box spills out without moving the box.
    const spills = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1 &&
      getComputedStyle(el).overflowX === 'visible';
    if (spills) {
      found.push(el.tagName.toLowerCase() + ' "' + (el.textContent || '').trim().slice(0, 30) +
        '" holds text ' + (el.scrollWidth - el.clientWidth) + ' px wider than itself');
    }
    if (r.right > box.right + 1 || r.left < box.left - 1) {
      found.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' "' +
        (el.textContent || '').trim().slice(0, 30) + '" sticks out of its card by ' +
        Math.round(Math.max(r.right - box.right, box.left - r.left)) + ' px');
    }
  }
}
return found;
"#;

pub(crate) async fn set_width(chrome: &Chrome, width: u32) -> Result<()> {
    let params = json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600});
    chrome.cdp("Emulation.setDeviceMetricsOverride", params).await?;
    Ok(())
}

/// Loads `url` at both widths and checks it; `name` names its screenshots.
async fn check_page(chrome: &Chrome, url: &str, name: &str) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for width in [360, 1280] {
        set_width(chrome, width).await?;
        chrome.client.goto(url).await?;
        chrome.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("h1")).await?;
        // The forms folded away (an application's settings) are checked
        // open.
        chrome.js("for (const d of document.querySelectorAll('details')) d.open = true; return true;").await?;
        chrome.save_screenshot(&format!("{name}-{width}")).await?;
        let found = chrome.js(OVERFLOW).await?;
        for line in found.as_array().into_iter().flatten() {
            problems.push(format!("{name} at {width} px: {}", line.as_str().unwrap_or_default()));
        }
        // Nothing hostile runs, and markup shows as text.
        ensure!(chrome.js("return window.__owned === undefined;").await? == Value::Bool(true), "{name}: a script ran");
    }
    Ok(problems)
}

#[tokio::test]
async fn the_admin_console_holds_its_layout_at_360_and_1280_px_with_the_longest_names() -> Result<()> {
    let server = Server::start().await?;
    let mut ids = Vec::new();
    for name in NAMES {
        let service = server.admin().create_service(name).await?;
        for account in
            ["mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm", "<img src=x onerror=alert(1)>"]
        {
            server.register(&service.id, &AccountName::parse(account)?, &AccountKey::generate(&mut OsRng)).await?;
        }
        ids.push(service.id);
    }
    // Two applications, one with the longest name (64 characters) and long
    // redirect URIs, the other with markup in its name, and a recovery
    // link: the cards that show them.
    let long_uri = format!("https://application.example.com/{}/callback", "very-long-path-segment/".repeat(6));
    let mut applications = Vec::new();
    for body in [
        json!({"name": NAMES[0], "redirect_uris": [long_uri], "post_logout_redirect_uris": [long_uri]}),
        json!({"name": NAMES[2], "redirect_uris": ["com.example.app:/callback"], "public": true,
               "id_token_signed_response_alg": "EdDSA"}),
    ] {
        let made = server
            .admin()
            .request(reqwest::Method::POST, &format!("/admin/api/services/{}/applications", ids[0]))
            .json(&body)
            .send()
            .await?;
        ensure!(made.status().is_success(), "{}", made.text().await?);
        let made: Value = made.json().await?;
        applications.push(made["client_id"].as_str().unwrap_or_default().to_owned());
    }
    let account = "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm";
    // Groups with the longest and most hostile names: the service page's
    // "Groups" card, the checkboxes of the application form and of the
    // profiles page, and an application that admits only two of them.
    for name in NAMES {
        let made = server
            .admin()
            .request(reqwest::Method::POST, &format!("/admin/api/services/{}/groups", ids[0]))
            .json(&json!({ "name": name }))
            .send()
            .await?;
        ensure!(made.status().is_success(), "{}", made.text().await?);
    }
    for (path, body) in [
        (format!("/admin/api/services/{}/accounts/{account}/groups", ids[0]), json!({ "groups": NAMES })),
        (
            format!("/admin/api/services/{}/applications/{}", ids[0], applications[0]),
            json!({"redirect_uris": [long_uri], "post_logout_redirect_uris": [long_uri],
                   "allowed_groups": [NAMES[0], NAMES[2]]}),
        ),
    ] {
        let set = server.admin().request(reqwest::Method::PUT, &path).json(&body).send().await?;
        ensure!(set.status().is_success(), "{}", set.text().await?);
    }
    let link = server
        .admin()
        .request(reqwest::Method::POST, &format!("/admin/api/services/{}/accounts/{account}/enrollments", ids[0]))
        .json(&json!({}))
        .send()
        .await?;
    ensure!(link.status().is_success(), "{}", link.text().await?);

    let chrome = Chrome::start("console").await?;
    chrome.client.goto(&server.url("/admin")).await?;
    chrome.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("token")).await?;
    chrome.client.find(Locator::Id("token")).await?.send_keys(ADMIN_TOKEN).await?;
    chrome.click("form[action='/admin/signin'] button[type=submit]").await?;
    chrome.wait_contains("h1", "Services").await?;
    // A script the page might let run would set this.
    chrome.js("window.alert = function () { window.__owned = true; }; return true;").await?;

    let mut problems = check_page(&chrome, &server.url("/admin"), "services").await?;
    problems.extend(check_page(&chrome, &server.url("/admin/audit"), "audit").await?);
    for (n, id) in ids.iter().enumerate() {
        problems
            .extend(check_page(&chrome, &server.url(&format!("/admin/services/{id}")), &format!("service-{n}")).await?);
    }
    // The profiles page, with each account's groups.
    let profiles = server.url(&format!("/admin/services/{}/profiles", ids[0]));
    problems.extend(check_page(&chrome, &profiles, "profiles").await?);
    // The page that asks before a service is deleted.
    for width in [360, 1280] {
        set_width(&chrome, width).await?;
        chrome.client.goto(&server.url("/admin")).await?;
        chrome.click(&format!("form[action='/admin/services/{}/delete'] button[type=submit]", ids[2])).await?;
        chrome.wait_contains("h1", "Delete this service?").await?;
        chrome.save_screenshot(&format!("are-you-sure-{width}")).await?;
        for line in chrome.js(OVERFLOW).await?.as_array().into_iter().flatten() {
            problems.push(format!("are-you-sure at {width} px: {}", line.as_str().unwrap_or_default()));
        }
    }
    // The applications card, open, kept as a screenshot of its own; then the
    // page that asks before the application with the longest name is
    // removed.
    for width in [360, 1280] {
        set_width(&chrome, width).await?;
        chrome.client.goto(&server.url(&format!("/admin/services/{}", ids[0]))).await?;
        chrome.wait_contains("#applications h2", "Applications").await?;
        chrome
            .js("for (const d of document.querySelectorAll('details')) d.open = true; \
                 document.getElementById('applications').scrollIntoView(); return true;")
            .await?;
        chrome.save_screenshot(&format!("applications-{width}")).await?;
        let form = format!("/admin/services/{}/applications/{}/delete", ids[0], applications[0]);
        chrome.click(&format!("form[action='{form}'] button[type=submit]")).await?;
        chrome.wait_contains("h1", "Remove this application?").await?;
        chrome.save_screenshot(&format!("remove-application-{width}")).await?;
        for line in chrome.js(OVERFLOW).await?.as_array().into_iter().flatten() {
            problems.push(format!("remove-application at {width} px: {}", line.as_str().unwrap_or_default()));
        }
    }
    ensure!(problems.is_empty(), "the layout breaks:\n{}", problems.join("\n"));
    chrome.close().await
}
