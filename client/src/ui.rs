//! Talking to the user: prompts, the "who is asking" summary, times, and
//! results as text or JSON.
//!
//! Prompts and the summary go to stderr, so that stdout carries only the
//! result and stays parseable with `--json`.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, IsTerminal, Write},
    sync::OnceLock,
};

use sesame_proto::{
    wire::{ChallengeContext, ChallengePurpose, NewKey},
    KeyLabel, UnixTime,
};
use time::{format_description::FormatItem, macros::format_description, OffsetDateTime, UtcOffset};

use crate::{store::Account, vault::Passphrase, Error};

static LOCAL_OFFSET: OnceLock<UtcOffset> = OnceLock::new();
const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]");

/// Reads the local time zone. It must run before any other thread starts:
/// the C library cannot read it safely once threads exist.
pub fn init_local_offset() {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let _ = LOCAL_OFFSET.set(offset);
}

/// `time` in the local time zone, e.g. `2026-01-01 12:00:00 +01:00`.
pub fn local_time(time: UnixTime) -> String {
    let offset = LOCAL_OFFSET.get().copied().unwrap_or(UtcOffset::UTC);
    OffsetDateTime::from_unix_timestamp(i64::try_from(time.as_secs()).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.to_offset(offset).format(TIME_FORMAT).ok())
        .unwrap_or_else(|| format!("{} (Unix time)", time.as_secs()))
}

/// How far `then` is from `now`, in words.
pub fn relative(then: UnixTime, now: UnixTime) -> String {
    let words = |secs: u64| match secs {
        0..=89 => format!("{secs} s"),
        90..=5399 => format!("{} min", (secs + 30) / 60),
        _ => format!("{} h", (secs + 1800) / 3600),
    };
    if then <= now {
        format!("{} ago", words(now.saturating_since(then)))
    } else {
        format!("in {}", words(then.saturating_since(now)))
    }
}

pub fn now() -> UnixTime {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UnixTime::from_secs(secs)
}

/// Makes text from the network safe to print: control characters (C0, DEL
/// and C1, so every ANSI and OSC escape), bidirectional controls, zero-width
/// characters and line separators could rewrite the terminal or disguise
/// what is shown. Every string a server chose passes through here before it
/// is printed, errors included.
pub fn safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            let hidden = matches!(
                c,
                '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            );
            if c.is_control() || hidden {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Where answers to prompts come from: the terminal, or nowhere.
pub struct Console {
    input: Option<Box<dyn BufRead + Send>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("interactive", &self.is_interactive()).finish()
    }
}

impl Console {
    /// Interactive when stdin is a terminal. When stdin was used for the
    /// token, the controlling terminal answers prompts instead, if the user
    /// is watching one.
    pub fn detect(stdin_taken: bool) -> Self {
        let input: Option<Box<dyn BufRead + Send>> = if !stdin_taken && io::stdin().is_terminal() {
            Some(Box::new(BufReader::new(io::stdin())))
        } else if stdin_taken && io::stderr().is_terminal() {
            File::open("/dev/tty").ok().map(|tty| Box::new(BufReader::new(tty)) as Box<dyn BufRead + Send>)
        } else {
            None
        };
        Self { input }
    }

    pub fn is_interactive(&self) -> bool {
        self.input.is_some()
    }

    /// Prints `prompt` and reads one trimmed line. End of input cancels.
    pub fn ask(&mut self, prompt: &str) -> Result<String, Error> {
        let input = self.input.as_mut().ok_or(Error::Cancelled)?;
        eprint!("{prompt}");
        io::stderr().flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            eprintln!();
            return Err(Error::Cancelled);
        }
        Ok(line.trim().to_owned())
    }

    /// Asks for a token, which a paste may bring across several lines (a
    /// mail client or a terminal wraps it): lines are taken until they
    /// make a whole token or link, an empty line ends the paste, and a
    /// first line that is no token or link at all is taken as it is. The
    /// decoder removes the white space between the lines (PROTOCOL.md §3.4).
    pub fn ask_token(&mut self, prompt: &str) -> Result<String, Error> {
        const MAX_LINES: usize = 16;
        let mut text = self.ask(prompt)?;
        for _ in 1..MAX_LINES {
            let looks_like_one = text.starts_with("sesame1.") || text.starts_with("http");
            if !looks_like_one || sesame_proto::UnverifiedToken::read(&text).is_ok() {
                break;
            }
            let more = self.ask("(the rest of it, or an empty line to finish) ")?;
            if more.is_empty() {
                break;
            }
            text.push_str(&more);
        }
        Ok(text)
    }

    /// Asks a yes/no question; only an explicit yes is yes.
    pub fn confirm(&mut self, question: &str) -> Result<bool, Error> {
        let answer = self.ask(&format!("{question} [y/N] "))?;
        Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
    }

    /// The passphrase: `SESAME_PASSPHRASE` for scripts, else typed without
    /// echo.
    pub fn passphrase(&self, prompt: &str) -> Result<Passphrase, Error> {
        if let Ok(text) = std::env::var("SESAME_PASSPHRASE") {
            return Ok(Passphrase::new(text));
        }
        self.typed_secret(prompt)?.ok_or(Error::PassphraseRequired)
    }

    /// A secret typed at the terminal without echo, or `None` without one.
    pub fn typed_secret(&self, prompt: &str) -> Result<Option<Passphrase>, Error> {
        if !self.is_interactive() {
            return Ok(None);
        }
        Ok(Some(Passphrase::new(rpassword::prompt_password(prompt)?)))
    }
}

/// Shows who is asking, before anything is signed (docs/PROTOCOL.md §6.2).
pub fn show_context(context: &ChallengeContext, accounts: &[Account], now: UnixTime) {
    let names = if accounts.is_empty() {
        "none yet".to_owned()
    } else {
        accounts.iter().map(|a| safe(&a.name)).collect::<Vec<_>>().join(", ")
    };
    match (context.purpose, &context.account) {
        (ChallengePurpose::Enroll, Some(account)) => {
            eprintln!("Request to add this authenticator to an account, from {}", safe(&context.origin));
            eprintln!("  account:       {}", safe(account));
        }
        _ => eprintln!("Sign-in request from {}", safe(&context.origin)),
    }
    eprintln!("  service:       {}", safe(&context.service_name));
    eprintln!("  browser:       {}", safe(&context.user_agent));
    eprintln!("  IP address:    {}", safe(&context.ip));
    eprintln!("  requested at:  {} ({})", local_time(context.requested_at), relative(context.requested_at, now));
    eprintln!("  expires:       {}", relative(context.expires_at, now));
    eprintln!("  your accounts: {names}");
}

/// Prints a command's result: JSON with `--json`, else a sentence.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

/// One line naming who asked, for results printed where no summary was shown.
pub fn requested_by(context: &ChallengeContext) -> String {
    format!(
        "Requested by {} from {} at {}.",
        safe(&context.user_agent),
        safe(&context.ip),
        local_time(context.requested_at)
    )
}

/// What to tell the owner of `account` about a key that joined it since
/// this authenticator last signed in (PROTOCOL.md §6.4), in one sentence
/// that says what to do when it was not them. Every part the server sent
/// is shown only in a form that cannot pass for something else: a label
/// that is not a valid key label as unnamed, an address that is not one
/// not at all.
pub fn new_key_notice(account: &str, key: &NewKey, account_page: &str) -> String {
    let what = if key.kind == "passkey" { "passkey" } else { "authenticator" };
    let name = match KeyLabel::parse(&key.label) {
        Ok(label) => format!(" \"{}\"", label.as_str()),
        Err(_) => String::new(),
    };
    // As sent, once it reads as an address, as the account page shows it.
    let from = match key.added_from.parse::<std::net::IpAddr>() {
        Ok(_) => format!(" from {}", key.added_from),
        Err(_) => String::new(),
    };
    format!(
        "A new {what}{name} was added to {} on {}{from}. If that was not you, remove it on the account page: {account_page}",
        safe(account),
        local_time(key.added_at),
    )
}

impl Output {
    pub fn result(&self, value: &serde_json::Value, text: &str) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = UnixTime::from_secs(10_000);
        assert_eq!(relative(UnixTime::from_secs(9_988), now), "12 s ago");
        assert_eq!(relative(UnixTime::from_secs(9_700), now), "5 min ago");
        assert_eq!(relative(UnixTime::from_secs(10_240), now), "in 4 min");
    }

    #[test]
    fn control_and_bidi_characters_are_not_printed() {
        assert_eq!(safe("Mozilla\u{1b}[2J\u{202E}x"), "Mozilla\u{FFFD}[2J\u{FFFD}x");
    }

    #[test]
    fn c1_controls_arabic_letter_mark_and_line_separators_are_not_printed() {
        // U+009B is the one-character CSI, U+009D the one-character OSC.
        assert_eq!(
            safe("a\u{9b}2Jb\u{9d}0;t\u{7}c\u{61C}d\u{2028}e"),
            "a\u{FFFD}2Jb\u{FFFD}0;t\u{FFFD}c\u{FFFD}d\u{FFFD}e"
        );
    }

    fn new_key(kind: &str, label: &str, added_from: &str) -> NewKey {
        NewKey {
            kind: kind.to_owned(),
            label: label.to_owned(),
            added_at: UnixTime::from_secs(1_764_547_200),
            added_from: added_from.to_owned(),
        }
    }

    const PAGE: &str = "https://login.example.com/services/a1/account";

    #[test]
    fn a_new_key_is_one_sentence_with_its_name_time_address_and_where_to_remove_it() {
        let _ = LOCAL_OFFSET.set(UtcOffset::UTC);
        let told = new_key_notice("alice", &new_key("sesame", "phone", "203.0.113.9"), PAGE);
        assert_eq!(
            told,
            "A new authenticator \"phone\" was added to alice on 2025-12-01 00:00:00 +00:00 from 203.0.113.9. \
             If that was not you, remove it on the account page: https://login.example.com/services/a1/account"
        );
        let passkey = new_key_notice("alice", &new_key("passkey", "", "::1"), PAGE);
        assert!(passkey.starts_with("A new passkey was added to alice on ") && passkey.contains(" from ::1."));
        // Any kind but `passkey` reads as an authenticator.
        assert!(new_key_notice("alice", &new_key("hardware", "", ""), PAGE).starts_with("A new authenticator was"));
    }

    #[test]
    fn a_name_that_is_no_key_label_and_an_address_that_is_none_are_not_shown() {
        let _ = LOCAL_OFFSET.set(UtcOffset::UTC);
        for (label, from) in [("ph\u{202e}one", "here"), ("a\u{1b}[2Jb", "203.0.113.9 evil"), (&*"x".repeat(65), "")] {
            let told = new_key_notice("alice", &new_key("sesame", label, from), PAGE);
            assert!(told.starts_with("A new authenticator was added to alice on "), "{told}");
            assert!(!told.contains(" from "), "{told}");
            assert!(told.chars().all(|c| !c.is_control() && !('\u{202a}'..='\u{202e}').contains(&c)), "{told:?}");
        }
        // Markup is a valid label, and a terminal shows it as text.
        let told = new_key_notice("alice", &new_key("sesame", "<b>phone</b>", ""), PAGE);
        assert!(told.starts_with("A new authenticator \"<b>phone</b>\" was added"), "{told}");
        // The account name the person chose is made safe too.
        assert!(!new_key_notice("al\u{202e}ice", &new_key("sesame", "", ""), PAGE).contains('\u{202e}'));
    }
}
