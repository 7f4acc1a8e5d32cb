//! An account's keys as their owner manages them on the account page, with
//! real `sesame` authenticators and headless Chromium: one renamed, another
//! removed through the page that asks first, and the warning before the
//! last; the account page and that page hold their layout at a phone's and
//! a laptop's width.

use anyhow::{ensure, Context as _};
use fantoccini::Locator;
use serde_json::{json, Value};
use sesame_tests::{Browser, Chrome, Result, Server, Sesame};

use crate::{
    console::{set_width, OVERFLOW},
    enroll::{enroll_and_confirm, json_ok, login, shown_token},
};

/// A name as long as a key's may be (64 bytes), of wide letters, with
/// markup that must show as text.
const LONG_NAME: &str = "<b>Work</b> laptop WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW";

/// The ids of `account`'s keys, by name, through the admin API.
async fn key_ids(server: &Server, service_id: &str, account: &str) -> Result<Vec<(String, String)>> {
    let uri = format!("/admin/api/services/{service_id}/accounts/{account}/keys");
    let keys: Vec<Value> =
        server.admin().request(reqwest::Method::GET, &uri).send().await?.error_for_status()?.json().await?;
    keys.iter()
        .map(|k| {
            let id = k["id"].as_str().context("an id")?.to_owned();
            Ok((k["label"].as_str().unwrap_or_default().to_owned(), id))
        })
        .collect()
}

/// What sticks out of the page or its card at 360 and 1280 px, the page
/// reloaded at each width; each kept as a screenshot.
async fn layout_problems(chrome: &Chrome, name: &str) -> Result<Vec<String>> {
    let url = chrome.client.current_url().await?;
    let mut problems = Vec::new();
    for width in [360, 1280] {
        set_width(chrome, width).await?;
        chrome.client.goto(url.as_str()).await?;
        chrome.client.wait().for_element(Locator::Css("h1")).await?;
        chrome.save_screenshot(&format!("{name}-{width}")).await?;
        for line in chrome.js(OVERFLOW).await?.as_array().into_iter().flatten() {
            problems.push(format!("{name} at {width} px: {}", line.as_str().unwrap_or_default()));
        }
    }
    set_width(chrome, 1280).await?;
    Ok(problems)
}

#[tokio::test]
async fn a_person_renames_one_key_removes_another_and_is_warned_before_the_last() -> Result<()> {
    let server = Server::start().await?;
    let service = server.create_service("Lighthouse").await?;
    let chrome = Chrome::start("devices").await?;
    let (laptop, phone) = (Sesame::new(), Sesame::new());

    // Registered with the laptop on the login page, which signs the browser
    // in; the phone added from the account page.
    chrome.client.goto(&service.login_url).await?;
    let token = shown_token(&chrome).await?;
    json_ok(&laptop.run(&["--json", "register", &token, "--name", "alice", "--yes"]));
    chrome.wait_contains("#login", "Signed in as alice").await?;
    let account_page = server.url(&format!("/services/{}/account", service.id));
    chrome.client.goto(&account_page).await?;
    chrome.click("#add-authenticator").await?;
    enroll_and_confirm(&chrome, &phone, "phone").await?;
    // A sign-in with the laptop's key, for a browser on this machine.
    let (ok, answer) = login(&Browser::new(&server), &service, &laptop, "alice").await?;
    ensure!(ok, "{answer}");
    let ids = key_ids(&server, &service.id, "alice").await?;
    let phone_id = ids.iter().find(|(label, _)| label == "phone").context("the phone's key")?.1.clone();
    let laptop_id = ids.iter().find(|(label, _)| label != "phone").context("the laptop's key")?.1.clone();
    let row = |id: &str| format!("#keys tr[data-key-id='{id}']");

    // Each key says when and from where it last signed in.
    chrome.client.goto(&account_page).await?;
    chrome.wait_contains(&format!("{} td.last-used", row(&laptop_id)), "from 127.0.0.1").await?;
    chrome.wait_contains(&format!("{} td.last-used", row(&phone_id)), "never").await?;

    // The laptop's key renamed, to a long name with markup: shown as text,
    // cut short, whole on hover.
    let field = chrome.client.find(Locator::Css(&format!("{} input[name=label]", row(&laptop_id)))).await?;
    field.clear().await?;
    field.send_keys(LONG_NAME).await?;
    chrome.click(&format!("{} form.rename button", row(&laptop_id))).await?;
    chrome.wait_contains("#account", "The new name is saved.").await?;
    chrome.wait_contains(&format!("{} td.key-name", row(&laptop_id)), "<b>Work</b> laptop").await?;
    let name = format!("document.querySelector(\"{} td.key-name .clip\")", row(&laptop_id));
    let title = chrome.js(&format!("return {name}.title;")).await?;
    ensure!(title == json!(LONG_NAME), "the whole name on hover: {title}");
    let cut = chrome.js(&format!("const e = {name}; return e.scrollWidth > e.clientWidth;")).await?;
    ensure!(cut == json!(true), "the name is cut short on the page");
    let mut problems = layout_problems(&chrome, "account").await?;

    // The phone's key removed through the page that asks first: not the
    // last key, and not this browser's session.
    chrome.click(&format!("{} a.remove", row(&phone_id))).await?;
    chrome.wait_contains("h1", "Remove this key?").await?;
    chrome.wait_contains("#key", "phone").await?;
    chrome.wait_contains("#sessions", "No session it opened is still open.").await?;
    ensure!(chrome.visible_text("#last-key").await.is_none(), "no last-key warning while the laptop's key remains");
    ensure!(chrome.visible_text("#own-session").await.is_none(), "this browser signed in with the laptop");
    problems.extend(layout_problems(&chrome, "remove-key").await?);
    chrome.click("#remove-key-button").await?;
    chrome.wait_contains("#account", "The key is removed").await?;
    let keys = chrome.wait_contains("#keys", "Work").await?;
    ensure!(!keys.contains("phone"), "the phone's key is gone from the list: {keys}");
    let (ok, answer) = login(&Browser::new(&server), &service, &phone, "alice").await?;
    ensure!(!ok && answer["error"] == "bad_signature", "the removed key signs nobody in: {answer}");

    // The last key: the page warns, and says that this browser is signed
    // out with it. Kept, it still signs in.
    chrome.click(&format!("{} a.remove", row(&laptop_id))).await?;
    chrome.wait_contains("#last-key", "This is the last key that can sign in as alice").await?;
    chrome.wait_contains("#last-key", "until an administrator sends you a recovery link").await?;
    chrome.wait_contains("#own-session", "removing it signs you out here").await?;
    chrome.wait_contains("#sessions", "1 session it opened is still open").await?;
    problems.extend(layout_problems(&chrome, "remove-last-key").await?);
    chrome.save_screenshot("last-key").await?;
    chrome.click("#keep-key").await?;
    chrome.wait_contains("#account-name", "alice").await?;
    let (ok, answer) = login(&Browser::new(&server), &service, &laptop, "alice").await?;
    ensure!(ok, "the key that was kept still signs in: {answer}");
    ensure!(problems.is_empty(), "the layout breaks:\n{}", problems.join("\n"));
    chrome.close().await
}
