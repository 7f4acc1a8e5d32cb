//! A hostile origin against the real `sesame`: escape sequences in its error
//! answers never reach the terminal, and an endless or oversized answer is
//! cut off at 64 KiB rather than buffered.
//!
//! The origin is a hand-written HTTP/1.1 server on 127.0.0.1, so that it can
//! misbehave in ways a well-made server library would not allow.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use sesame_proto::{
    ChallengeId, FreshnessSecret, Nonce, Origin, ServerKey, ServiceId, ServiceName, TokenClaims, UnixTime,
};
use sesame_tests::{eventually, stderr, stdout, Result, Sesame};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

/// The most a hostile origin may push into a connection before `sesame`
/// stops reading: the 64 KiB cap plus what the kernel's socket buffers on
/// both sides absorb. A client that buffered the whole answer would take
/// hundreds of megabytes in the ten seconds of its timeout.
const MOST_SENT: u64 = 16 * 1024 * 1024;

/// What the hostile origin answers to every request.
#[derive(Debug, Clone)]
enum Answer {
    /// A complete response, written as is.
    Fixed(String),
    /// A 200 whose body never ends, chunked or with this declared length.
    Endless { declared_length: Option<u64> },
}

/// The origin, and how many body bytes it managed to send.
struct Hostile {
    origin: String,
    sent: Arc<AtomicU64>,
    finished: Arc<AtomicBool>,
}

impl Hostile {
    async fn start(answer: Answer) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let sent = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let (counter, done) = (sent.clone(), finished.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                // Whatever was asked: read up to the end of the headers.
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                match &answer {
                    Answer::Fixed(response) => {
                        let _ = stream.write_all(response.as_bytes()).await;
                    }
                    Answer::Endless { declared_length } => {
                        let framing = match declared_length {
                            Some(length) => format!("content-length: {length}"),
                            None => "transfer-encoding: chunked".to_owned(),
                        };
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{framing}\r\n\r\n");
                        let filler = vec![b'['; 16 * 1024];
                        let chunk = match declared_length {
                            Some(_) => filler,
                            None => [format!("{:x}\r\n", filler.len()).into_bytes(), filler, b"\r\n".to_vec()].concat(),
                        };
                        if stream.write_all(head.as_bytes()).await.is_ok() {
                            while stream.write_all(&chunk).await.is_ok() {
                                counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                            }
                        }
                        done.store(true, Ordering::SeqCst);
                    }
                }
            }
        });
        Ok(Self { origin, sent, finished })
    }

    /// A token that names this origin, signed by a key of its own: `sesame`
    /// then asks the origin for its identity, and meets the hostile answer.
    fn token(&self) -> Result<String> {
        let now = UnixTime::from_secs(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
        let claims = TokenClaims {
            origin: Origin::parse(&self.origin)?,
            service_id: ServiceId(rand::random()),
            service_name: ServiceName::parse("Totally Legit")?,
            challenge_id: ChallengeId(rand::random()),
            nonce: Nonce(rand::random()),
            issued_at: now,
            expires_at: now.saturating_add(300),
            rotation_secs: 3,
        };
        let key = ServerKey::from_seed(&rand::random());
        Ok(key.issue(claims)?.at_step(&FreshnessSecret::from_bytes(rand::random()), 0))
    }
}

/// A JSON error answer with this status whose strings try to rewrite the
/// terminal: set the window title, erase the line, and print a fake success.
fn escaping_error(status: &str) -> String {
    let body = serde_json::json!({
        "error": "nope\u{1b}[8m",
        "message": "\u{1b}]0;owned\u{7}\u{1b}[2K\rsesame: \u{1b}[32mRegistered alice\u{9b}0m\u{202e}",
    })
    .to_string();
    format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
}

/// The text has no control character but its final line break, and is one
/// line.
fn assert_clean_line(text: &str) {
    let line = text.strip_suffix('\n').unwrap_or(text);
    assert!(!line.chars().any(char::is_control), "control characters reached the terminal: {text:?}");
    assert!(!line.contains('\u{202e}'), "a bidi override reached the terminal: {text:?}");
}

// Several threads: `sesame` runs as a blocking child process while the
// origin answers it from the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_a_server_error_never_reach_the_terminal() -> Result<()> {
    for status in ["400 Bad Request", "503 Service Unavailable"] {
        let hostile = Hostile::start(Answer::Fixed(escaping_error(status))).await?;
        let token = hostile.token()?;
        let sesame = Sesame::new();

        let out = sesame.run(&["register", &token, "--name", "alice", "--yes"]);
        assert!(!out.status.success(), "{status}");
        let text = stderr(&out);
        assert_clean_line(&text);
        assert!(text.starts_with("sesame: the server refused the request: "), "{status}: {text:?}");

        let out = sesame.run(&["--json", "register", &token, "--name", "alice", "--yes"]);
        assert!(!out.status.success(), "{status}");
        let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        for field in ["error", "message"] {
            let value = result[field].as_str().unwrap_or_default();
            assert_clean_line(value);
        }
        assert_clean_line(&stderr(&out));
        assert!(stdout(&out).lines().count() == 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_cut_off_after_64_kib() -> Result<()> {
    for declared_length in [None, Some(10_000_000_000)] {
        let hostile = Hostile::start(Answer::Endless { declared_length }).await?;
        let out = Sesame::new().run(&["register", &hostile.token()?, "--name", "alice", "--yes"]);
        assert!(!out.status.success());
        assert_eq!(
            stderr(&out),
            format!(
                "sesame: {} gave an answer that is not Sesame's (the answer is larger than 64 KiB)\n",
                hostile.origin
            ),
            "declared length {declared_length:?}"
        );
        // The origin stops being able to write once `sesame` has hung up.
        let finished = hostile.finished.clone();
        eventually(std::time::Duration::from_secs(10), || {
            let finished = finished.clone();
            async move { finished.load(Ordering::SeqCst).then_some(()) }
        })
        .await?;
        let sent = hostile.sent.load(Ordering::SeqCst);
        assert!(sent < MOST_SENT, "the origin pushed {sent} bytes into sesame (declared length {declared_length:?})");
    }
    Ok(())
}
