//! Browser: headless Chromium driven over WebDriver by a chromedriver that each
//! test starts for itself.

use super::*;

/// Chromium, or `SESAME_TEST_CHROMIUM`.
fn chromium_bin() -> PathBuf {
    std::env::var_os("SESAME_TEST_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// chromedriver, or `SESAME_TEST_CHROMEDRIVER`.
fn chromedriver_bin() -> PathBuf {
    std::env::var_os("SESAME_TEST_CHROMEDRIVER").map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from)
}

/// Where browser tests leave their screenshots: `target/test-artifacts/browser/`.
pub fn browser_artifacts_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("test-artifacts").join("browser");
    std::fs::create_dir_all(&dir).expect("the artifacts folder can be created under target/");
    dir
}

/// A `chromedriver` process on its own port, in its own process group so that
/// dropping it also ends every Chromium process it started.
#[derive(Debug)]
pub struct Chromedriver {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Chromedriver {
    pub async fn start() -> Result<Self> {
        use std::os::unix::process::CommandExt as _;

        let dir = tempfile::Builder::new().prefix("sesame-chrome-").tempdir()?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))?;
        let child = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.path().join("chromedriver-verbose.log").display()))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start chromedriver (install it: apt-get install chromium chromium-driver)")?;
        let mut driver = Self { child, port, dir };
        driver.wait_ready().await?;
        Ok(driver)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("chromedriver exited with {status}: {}", self.log());
            }
            if let Ok(res) = client.get(format!("{}/status", self.url())).send().await {
                let ready = res.json::<Value>().await.ok().and_then(|v| v["value"]["ready"].as_bool());
                if ready == Some(true) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready in 20 s: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes under it.
        // A system call, not `kill -KILL -PGID`: procps-ng 4.0.2's `kill`
        // reads a negative id as -1 and signals every process.
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user agent of the phone [`Chrome::start_phone`] plays.
pub const PHONE_USER_AGENT: &str =
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36";

/// A headless Chromium with a fresh profile, driven through WebDriver. It can
/// reach loopback only.
#[derive(Debug)]
pub struct Chrome {
    pub client: fantoccini::Client,
    /// The test's name, which prefixes its screenshots.
    pub name: String,
    // Dropped after the client: the driver kills the browser, then the
    // profile folder goes.
    driver: Chromedriver,
    profile: TempDir,
}

impl Chrome {
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_with(name, &[]).await
    }

    /// Starts Chromium with `extra` command-line switches.
    pub async fn start_with(name: &str, extra: &[String]) -> Result<Self> {
        Self::launch(name, extra, None).await
    }

    /// Starts Chromium as a phone: a 360 px wide touch screen, and a phone's
    /// user agent, so that pages take it for one.
    pub async fn start_phone(name: &str, extra: &[String]) -> Result<Self> {
        let phone = serde_json::json!({
            "deviceMetrics": { "width": 360, "height": 780, "pixelRatio": 2.0, "touch": true, "mobile": true },
            "userAgent": PHONE_USER_AGENT,
        });
        Self::launch(name, extra, Some(phone)).await
    }

    async fn launch(name: &str, extra: &[String], mobile_emulation: Option<Value>) -> Result<Self> {
        let driver = Chromedriver::start().await?;
        let profile = tempfile::Builder::new().prefix("sesame-chrome-profile-").tempdir()?;
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-default-apps".to_owned(),
            // Any host name that slips through resolves to nothing: the
            // tests use 127.0.0.1 and localhost (a TLS origin needs a name)
            // only, and the browser must not go out.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost".to_owned(),
            "--window-size=1200,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let args: Vec<String> = args.into_iter().chain(extra.iter().cloned()).collect();
        let mut caps = serde_json::Map::new();
        let mut options = serde_json::json!({ "binary": chromium_bin(), "args": args });
        if let Some(phone) = mobile_emulation {
            options["mobileEmulation"] = phone;
        }
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .with_context(|| format!("cannot open a Chromium session: {}", driver.log()))?;
        Ok(Self { client, name: name.to_owned(), driver, profile })
    }

    /// The visible text of the first element matching `css`, or `None` when
    /// there is none or it is hidden.
    pub async fn visible_text(&self, css: &str) -> Option<String> {
        let element = self.client.find(fantoccini::Locator::Css(css)).await.ok()?;
        if !element.is_displayed().await.ok()? {
            return None;
        }
        element.text().await.ok()
    }

    /// Clicks the first element matching `css`, waiting up to 10 s for it to
    /// appear: after a click that navigates, the next page may still be
    /// loading.
    pub async fn click(&self, css: &str) -> Result<()> {
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(fantoccini::Locator::Css(css))
            .await
            .with_context(|| format!("no {css} to click"))?;
        element.click().await?;
        Ok(())
    }

    /// Polls until the visible text of `css` satisfies `ok`, for up to
    /// `timeout`; returns that text. On failure the error names the last text
    /// seen and a screenshot is saved.
    pub async fn wait_text(
        &self,
        css: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(text) = self.visible_text(css).await {
                if ok(&text) {
                    return Ok(text);
                }
                last = Some(text);
            }
            if Instant::now() > deadline {
                let shot = self.save_screenshot("timeout").await.map(|p| p.display().to_string()).unwrap_or_default();
                bail!("{css} did not show {what} within {timeout:?}; last seen: {last:?} (screenshot {shot})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the visible text of `css` contains `needle`.
    pub async fn wait_contains(&self, css: &str, needle: &str) -> Result<String> {
        self.wait_text(css, &format!("{needle:?}"), Duration::from_secs(10), |t| t.contains(needle)).await
    }

    /// Runs a script in the page and returns its result.
    pub async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, Vec::new()).await?)
    }

    /// Runs a script that ends by calling its last argument with the result,
    /// for work the page does asynchronously.
    pub async fn js_async(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute_async(script, Vec::new()).await?)
    }

    /// Sends a Chrome DevTools Protocol command to the current tab, through
    /// chromedriver: what WebDriver itself cannot do, such as a virtual
    /// WebAuthn authenticator.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        let session = self.client.session_id().await?.context("no WebDriver session")?;
        let url = format!("{}/session/{session}/goog/cdp/execute", self.driver.url());
        let res =
            reqwest::Client::new().post(url).json(&serde_json::json!({ "cmd": cmd, "params": params })).send().await?;
        let status = res.status();
        let body: Value = res.json().await?;
        ensure!(status.is_success(), "{cmd} failed ({status}): {body}");
        Ok(body["value"].clone())
    }

    /// Gives this tab a phone's built-in authenticator, as DevTools
    /// emulates one: it holds passkeys, checks the person (user
    /// verification, `verified`) and, with `prf`, derives keys from a
    /// credential (the WebAuthn PRF extension). It answers at once, as if the
    /// person touched it. Returns its id for [`Chrome::set_user_verified`].
    pub async fn add_phone_authenticator(&self, prf: bool, verified: bool) -> Result<String> {
        self.cdp("WebAuthn.enable", serde_json::json!({})).await?;
        let added = self
            .cdp(
                "WebAuthn.addVirtualAuthenticator",
                serde_json::json!({ "options": {
                    "protocol": "ctap2",
                    "ctap2Version": "ctap2_1",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": verified,
                    "hasPrf": prf,
                    "automaticPresenceSimulation": true,
                }}),
            )
            .await?;
        Ok(added["authenticatorId"].as_str().context("an authenticator id")?.to_owned())
    }

    /// Makes the emulated authenticator pass or fail the person's check
    /// from now on, as a wrong fingerprint would.
    pub async fn set_user_verified(&self, authenticator: &str, verified: bool) -> Result<()> {
        let params = serde_json::json!({ "authenticatorId": authenticator, "isUserVerified": verified });
        self.cdp("WebAuthn.setUserVerified", params).await?;
        Ok(())
    }

    /// A PNG of the browser's viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        Ok(self.client.screenshot().await?)
    }

    /// Saves a screenshot as `<artifacts>/<test name>-<state>.png`.
    pub async fn save_screenshot(&self, state: &str) -> Result<PathBuf> {
        let path = browser_artifacts_dir().join(format!("{}-{state}.png", self.name));
        std::fs::write(&path, self.screenshot().await?)?;
        Ok(path)
    }

    /// Ends the WebDriver session, which closes Chromium cleanly.
    pub async fn close(self) -> Result<()> {
        let Self { client, driver, profile, .. } = self;
        client.close().await?;
        drop(driver);
        drop(profile);
        Ok(())
    }
}

/// A one-frame Y4M video of `png`, for Chromium's fake camera, made with
/// ffmpeg as a user could.
pub fn y4m_of(png: &[u8], dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let still = dir.join("login-page.png");
    let video = dir.join("login-page.y4m");
    std::fs::write(&still, png)?;
    let out = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&still)
        // 4:2:0 needs even sides: Chromium reads a frame of an odd-sized
        // Y4M as the wrong number of bytes, and shows black.
        .args(["-frames:v", "1", "-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .output()
        .context("cannot run ffmpeg (install it: apt-get install ffmpeg)")?;
    ensure!(out.status.success(), "ffmpeg failed: {}", stderr(&out));
    Ok(video)
}

/// Every QR code found in a PNG, decoded as text.
pub fn decode_qr_png(png: &[u8]) -> Result<Vec<String>> {
    let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)?.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    prepared
        .detect_grids()
        .into_iter()
        .map(|grid| grid.decode().map(|(_, text)| text).map_err(|e| anyhow::anyhow!("a QR code does not decode: {e}")))
        .collect()
}
