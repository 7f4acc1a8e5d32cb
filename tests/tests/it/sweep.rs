//! The real server sweeps old rows on its own schedule.

use std::time::Duration;

use serde_json::Value;
use sesame_tests::{eventually, Browser, Result, Server, ServerOptions};

#[tokio::test]
async fn the_server_sweeps_expired_challenges_on_its_schedule() -> Result<()> {
    let server = Server::start_with(ServerOptions {
        challenge_ttl: Some(2),
        extra_args: ["--sweep-interval", "1", "--challenge-retention", "0"].map(String::from).to_vec(),
        ..ServerOptions::default()
    })
    .await?;
    let service = server.create_service("Example").await?;
    let browser = Browser::new(&server);
    let challenge = browser.start_challenge(&service.id).await?;
    assert_eq!(browser.status(&challenge).await?["status"], "pending");
    // Expired after 2 s, kept for no time after that, and swept within a
    // second: then its status is gone.
    let gone = eventually(Duration::from_secs(30), || async {
        let res = browser.client.get(browser.url(&challenge.status_url)).send().await.ok()?;
        (res.status() == 404).then_some(res)
    })
    .await?;
    let body: Value = gone.json().await?;
    assert_eq!(body["error"], "unknown_challenge");
    Ok(())
}
