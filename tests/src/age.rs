//! The standard `age` tool, which reads passphrases only from a terminal.

use super::*;

/// Runs `age ARGS…` on a pseudo-terminal and types `passphrase` at each of
/// its passphrase prompts, as a person would. The `age` package comes from
/// the distribution; scripts/test installs it.
pub fn age_on_terminal(args: &[&std::ffi::OsStr], passphrase: &str) -> Result<(bool, String)> {
    on_terminal(Path::new("age"), args, &["Enter passphrase", "Confirm passphrase"], passphrase)
}

/// Runs `PROGRAM ARGS…` on a pseudo-terminal (`script` from util-linux)
/// and types `answer` each time one of `prompts` appears on it. Returns
/// whether it succeeded and what it printed on the terminal. No passphrase
/// comes from the environment.
pub fn on_terminal(
    program: &Path,
    args: &[&std::ffi::OsStr],
    prompts: &[&str],
    answer: &str,
) -> Result<(bool, String)> {
    let answers: Vec<(&str, &str)> = prompts.iter().map(|prompt| (*prompt, answer)).collect();
    on_terminal_answering(program, args, &answers)
}

/// [`on_terminal`] with an answer of its own for each prompt: each time
/// `prompt` appears, `answer` is typed.
pub fn on_terminal_answering(
    program: &Path,
    args: &[&std::ffi::OsStr],
    answers: &[(&str, &str)],
) -> Result<(bool, String)> {
    use std::io::{Read as _, Write as _};
    // `script -c` takes one shell command line: quote every argument.
    let quoted: Vec<String> = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect();
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command"])
        .arg(quoted.join(" "))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("SESAME_DB")
        .env_remove("SESAME_PASSPHRASE")
        .env_remove("SESAME_BACKUP_PASSPHRASE")
        .spawn()
        .context("cannot run script (util-linux) to give a program a terminal")?;
    let mut stdout = child.stdout.take().context("stdout is piped")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1024];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    let (mut screen, mut answered) = (String::new(), vec![0; answers.len()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Each time a prompt appears, it gets its answer.
        for ((prompt, answer), answered) in answers.iter().zip(answered.iter_mut()) {
            while *answered < screen.matches(prompt).count() {
                stdin.write_all(format!("{answer}\n").as_bytes())?;
                stdin.flush()?;
                *answered += 1;
            }
        }
        if let Some(status) = child.try_wait()? {
            // What was printed just before the end.
            while let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(200)) {
                screen.push_str(&String::from_utf8_lossy(&chunk));
            }
            return Ok((status.success(), screen));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not finish within 60 s; it printed: {screen}", program.display());
        }
        if let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(50)) {
            screen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
