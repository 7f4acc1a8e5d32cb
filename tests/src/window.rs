//! The authenticator's window: `sesame ui`.

use super::*;

/// A running `sesame ui` on an authenticator's keystore, killed on drop.
#[derive(Debug)]
pub struct SesameUi {
    child: Child,
    /// The address it printed, with the run's secret.
    pub url: String,
    /// `http://127.0.0.1:PORT`, its origin.
    pub origin: String,
    /// `127.0.0.1:PORT`, the only `Host` it answers.
    pub host: String,
}

impl Sesame {
    /// Starts `sesame --db <own db> ui --no-browser ARGS…` and waits for the
    /// address it prints first.
    pub fn ui(&self, args: &[&str]) -> Result<SesameUi> {
        self.ui_with_env(args, &[])
    }

    /// [`Sesame::ui`] with these environment variables set, such as the
    /// session bus of a system keyring.
    pub fn ui_with_env(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<SesameUi> {
        use std::io::BufRead as _;
        let mut child = Command::new(sesame_bin())
            .arg("--db")
            .arg(&self.db)
            .args(["ui", "--no-browser"])
            .args(args)
            .env_remove("SESAME_DB")
            .env_remove("SESAME_PASSPHRASE")
            .env("DBUS_SESSION_BUS_ADDRESS", crate::NO_SESSION_BUS)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start sesame ui")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut ui = SesameUi { child, url: String::new(), origin: String::new(), host: String::new() };
        let line = receiver.recv_timeout(Duration::from_secs(20)).context("sesame ui printed no address")?;
        let url = line.trim().to_owned();
        let host = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("sesame ui printed {url:?}, not an address"))?
            .to_owned();
        ui.origin = format!("http://{host}");
        ui.host = host;
        ui.url = url;
        Ok(ui)
    }
}

impl Drop for SesameUi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
