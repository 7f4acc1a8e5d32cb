//! Fixed keys, times and tokens, and every invalid case derived from them.
//!
//! The same cases feed the named tests in `properties.rs` and the data file
//! `shared/vectors/protocol.json`, so the file another implementation checks
//! itself against is exactly what this crate is tested with.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use ed25519_dalek::Signer as _;
use sesame_proto::{
    token::PREFIX, AccountKey, AccountName, BaseToken, ChallengeId, DenyRequest, EnrollRequest, Error, FreshnessSecret,
    KeyLabel, LoginRequest, MatchNumber, Nonce, Origin, RegisterRequest, RekeyRequest, ServerKey, ServerPublicKey,
    ServiceId, ServiceName, Token, TokenClaims, UnixTime, UnverifiedToken,
};

pub(crate) const ISSUED_AT: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
pub(crate) const NOW: u64 = ISSUED_AT + 10;
pub(crate) const WINDOW: u64 = 30;
pub(crate) const ROTATION: u8 = 3;

pub(crate) fn seed(label: u8) -> [u8; 32] {
    std::array::from_fn(|i| label.wrapping_mul(31).wrapping_add(i as u8))
}

pub(crate) fn server_key() -> ServerKey {
    ServerKey::from_seed(&seed(1))
}

pub(crate) fn other_server_key() -> ServerKey {
    ServerKey::from_seed(&seed(2))
}

pub(crate) fn code_secret() -> FreshnessSecret {
    FreshnessSecret::from_bytes(seed(3))
}

pub(crate) fn account_key() -> AccountKey {
    AccountKey::from_seed(&seed(4))
}

/// The key of a second authenticator: the one an enrollment adds, and the
/// one a rekey replaces `account_key` with.
pub(crate) fn new_account_key() -> AccountKey {
    AccountKey::from_seed(&seed(5))
}

pub(crate) fn laptop() -> KeyLabel {
    KeyLabel::parse("work laptop").unwrap()
}

pub(crate) fn claims(service_id: u8, service_name: &str) -> TokenClaims {
    TokenClaims {
        origin: Origin::parse("https://login.example.com").unwrap(),
        service_id: ServiceId([service_id; 16]),
        service_name: ServiceName::parse(service_name).unwrap(),
        challenge_id: ChallengeId([0xc1; 16]),
        nonce: Nonce([0x5a; 16]),
        issued_at: UnixTime::from_secs(ISSUED_AT),
        expires_at: UnixTime::from_secs(ISSUED_AT + 300),
        rotation_secs: ROTATION,
    }
}

pub(crate) fn base_token() -> BaseToken {
    server_key().issue(claims(0xa1, "Example Mail")).unwrap()
}

/// The token as the page shows it at `NOW` (step 3).
pub(crate) fn token_text() -> String {
    let base = base_token();
    base.at_step(&code_secret(), base.step_at(UnixTime::from_secs(NOW)))
}

pub(crate) fn token() -> Token {
    UnverifiedToken::parse(&token_text()).unwrap().verify(&server_key().public_key()).unwrap()
}

/// Everything a server checks about a token, in the order it checks.
pub(crate) fn check_token(text: &str, key: &ServerPublicKey, now: u64) -> Result<Token, Error> {
    let now = UnixTime::from_secs(now);
    let token = UnverifiedToken::parse(text)?.verify(key)?;
    token.check_lifetime(now, 0)?;
    code_secret().verify(&token, now, WINDOW)?;
    Ok(token)
}

/// [`check_token`] for what a person pasted or scanned: a bare token or a
/// link (PROTOCOL.md §3.6).
pub(crate) fn check_input(input: &str, key: &ServerPublicKey, now: u64) -> Result<Token, Error> {
    let now = UnixTime::from_secs(now);
    let token = UnverifiedToken::read(input)?.verify(key)?;
    token.check_lifetime(now, 0)?;
    code_secret().verify(&token, now, WINDOW)?;
    Ok(token)
}

/// Something pasted or scanned, and what reading it gives: the bare token
/// it carries, or an error.
pub(crate) struct InputCase {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) input: String,
    pub(crate) outcome: Result<String, Error>,
}

pub(crate) fn input_cases() -> Vec<InputCase> {
    let token = token_text();
    let link = format!("https://login.example.com/app#{token}");
    let mut cases = Vec::new();
    let mut case = |name, description, input: String, outcome| {
        cases.push(InputCase { name, description, input, outcome });
    };
    case("bare_token", "the token alone", token.clone(), Ok(token.clone()));
    case("link", "the link a QR code holds", link.clone(), Ok(token.clone()));
    case(
        "link_with_white_space",
        "a link with a line break and spaces around it",
        format!("\n  {link}\t "),
        Ok(token.clone()),
    );
    case(
        "link_for_other_origin",
        "a link to another server carrying this server's token",
        format!("https://login.example.org/app#{token}"),
        Err(Error::LinkOriginMismatch),
    );
    case(
        "link_over_plain_http",
        "http:// where the token names https://",
        format!("http://login.example.com/app#{token}"),
        Err(Error::LinkOriginMismatch),
    );
    case(
        "link_with_default_port",
        "the same server written with :443 is another origin string",
        format!("https://login.example.com:443/app#{token}"),
        Err(Error::LinkOriginMismatch),
    );
    let mut tampered = token.clone().into_bytes();
    tampered[60] = if tampered[60] == b'A' { b'B' } else { b'A' }; // in the nonce
    let tampered = String::from_utf8(tampered).unwrap();
    case(
        "link_for_other_origin_with_tampered_token",
        "two faults: the origins differ, which is checked before the signature",
        format!("https://login.example.org/app#{tampered}"),
        Err(Error::LinkOriginMismatch),
    );
    case(
        "link_with_tampered_token",
        "the origins agree, the token's signature does not",
        format!("https://login.example.com/app#{tampered}"),
        Err(Error::BadTokenSignature),
    );
    case(
        "link_with_trailing_slash",
        "the path is /app/, not /app",
        format!("https://login.example.com/app/#{token}"),
        Err(Error::BadLink),
    );
    case(
        "link_with_query",
        "a query before the fragment",
        format!("https://login.example.com/app?from=mail#{token}"),
        Err(Error::BadLink),
    );
    case("link_without_fragment", "no # at all", "https://login.example.com/app".to_owned(), Err(Error::BadLink));
    case(
        "link_to_other_path",
        "the login page's path instead of the app's",
        format!("https://login.example.com/login#{token}"),
        Err(Error::BadLink),
    );
    case(
        "link_with_upper_case_host",
        "the origin must be written in lower case",
        format!("https://Login.example.com/app#{token}"),
        Err(Error::BadLink),
    );
    case(
        "link_with_upper_case_scheme",
        "HTTPS:// is neither a link nor a token",
        format!("HTTPS://login.example.com/app#{token}"),
        Err(Error::NotAToken),
    );
    case(
        "link_to_something_else",
        "the fragment is not a token",
        "https://login.example.com/app#hello".to_owned(),
        Err(Error::NotAToken),
    );
    case(
        "link_with_space_after_fragment_mark",
        "white space is removed wherever it stands",
        format!("https://login.example.com/app# {token}"),
        Ok(token.clone()),
    );
    let (head, tail) = token.split_at(70);
    case(
        "token_across_lines",
        "a token a mail client broke into indented lines",
        format!("{head}\r\n    {tail}"),
        Ok(token.clone()),
    );
    let (head, tail) = link.split_at(40);
    case(
        "link_across_lines_with_a_no_break_space",
        "a link a terminal wrapped, with U+00A0 and U+2028 (both White_Space)",
        format!("{head}\u{a0}\u{2028}{tail}"),
        Ok(token.clone()),
    );
    case(
        "token_with_a_zero_width_space",
        "U+200B is not White_Space: it stays, and the base64url fails",
        format!("{head}\u{200b}{tail}", head = &token[..70], tail = &token[70..]),
        Err(Error::BadEncoding),
    );
    case(
        "link_too_long",
        "a link longer than 617 bytes is refused before it is read",
        format!("https://login.example.com/app#{token}{}", "A".repeat(600)),
        Err(Error::TokenTooLong),
    );
    cases
}

pub(crate) struct TokenCase {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) token: String,
    pub(crate) now: u64,
    pub(crate) error: Error,
}

fn split(text: &str) -> (Vec<u8>, String) {
    let (base, fresh) = text.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
    (URL_SAFE_NO_PAD.decode(base).unwrap(), fresh.to_owned())
}

fn join(base: &[u8], fresh: &str) -> String {
    format!("{PREFIX}{}.{fresh}", URL_SAFE_NO_PAD.encode(base))
}

/// Signs `body` the way a server does, with `key`'s seed.
fn sign_body(body: &[u8], key_seed: &[u8; 32]) -> Vec<u8> {
    let key = ed25519_dalek::SigningKey::from_bytes(key_seed);
    let signature = key.sign(&[b"sesame/1/token\0".as_slice(), body].concat());
    [body, &signature.to_bytes()].concat()
}

pub(crate) fn token_cases() -> Vec<TokenCase> {
    let text = token_text();
    let (base, fresh) = split(&text);
    let body = &base[..base.len() - 64];
    let name_at = body.len() - "Example Mail".len();
    let mut cases = Vec::new();
    let mut case = |name, description, token: String, now, error| {
        cases.push(TokenCase { name, description, token, now, error });
    };

    let mut tampered = base.clone();
    tampered[name_at] ^= 0x01; // "Example Mail" -> "Dxample Mail"
    case(
        "tampered_service_name",
        "one bit of the service name flipped",
        join(&tampered, &fresh),
        NOW,
        Error::BadTokenSignature,
    );

    let mut tampered = base.clone();
    tampered[58] ^= 0x80; // first byte of service_id
    case("tampered_service_id", "the service id changed", join(&tampered, &fresh), NOW, Error::BadTokenSignature);

    let mut bad_sig = base.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    case(
        "tampered_signature",
        "one bit of the signature flipped",
        join(&bad_sig, &fresh),
        NOW,
        Error::BadTokenSignature,
    );

    let other = other_server_key().issue(claims(0xa1, "Example Mail")).unwrap();
    case(
        "other_server_key",
        "signed by another server's key (different key id)",
        other.at_step(&code_secret(), 3),
        NOW,
        Error::UnknownSigningKey,
    );

    let forged = sign_body(body, &seed(2));
    case(
        "forged_with_our_key_id",
        "names this server's key id but is signed by another key",
        join(&forged, &fresh),
        NOW,
        Error::BadTokenSignature,
    );

    case("expired", "presented at expires_at", text.clone(), ISSUED_AT + 300, Error::Expired);

    case("not_yet_valid", "presented before issued_at", text.clone(), ISSUED_AT - 1, Error::NotYetValid);

    let base_token = base_token();
    case(
        "stale_code",
        "the step-0 code presented 31 s after it was shown",
        base_token.at_step(&code_secret(), 0),
        ISSUED_AT + 31,
        Error::StaleCode,
    );

    case(
        "code_under_other_secret",
        "a code computed with another challenge secret",
        base_token.at_step(&FreshnessSecret::from_bytes(seed(9)), 3),
        NOW,
        Error::BadCode,
    );

    case(
        "future_code",
        "a genuine code for a step not yet reached",
        base_token.at_step(&code_secret(), 10),
        NOW,
        Error::BadCode,
    );

    case(
        "truncated_body",
        "the signed part cut by one byte",
        join(&base[..base.len() - 1], &fresh),
        NOW,
        Error::Truncated,
    );

    case("missing_code", "no code part", format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&base)), NOW, Error::Truncated);

    case("short_code", "a 13-byte code part", join(&base, &URL_SAFE_NO_PAD.encode([0u8; 13])), NOW, Error::Truncated);

    case(
        "trailing_bytes",
        "one byte after the signature",
        join(&[base.as_slice(), &[0]].concat(), &fresh),
        NOW,
        Error::TrailingBytes,
    );

    case(
        "long_code",
        "a 15-byte code part",
        join(&base, &URL_SAFE_NO_PAD.encode([0u8; 15])),
        NOW,
        Error::TrailingBytes,
    );

    case("wrong_prefix", "another scheme's token", text.replacen("sesame1.", "sesame2.", 1), NOW, Error::NotAToken);

    case("padded_base64", "base64 with = padding", format!("{text}="), NOW, Error::BadEncoding);

    case(
        "standard_alphabet",
        "'+' from the standard base64 alphabet",
        text.replacen('.', ".+", 2).replacen(".+", ".", 1),
        NOW,
        Error::BadEncoding,
    );

    let mut v2 = body.to_vec();
    v2[0] = 2;
    case(
        "unsupported_version",
        "version byte 2",
        join(&sign_body(&v2, &seed(1)), &fresh),
        NOW,
        Error::UnsupportedVersion(2),
    );

    let mut long = body.to_vec();
    long[17..25].copy_from_slice(&(ISSUED_AT + 601).to_be_bytes());
    case(
        "lifetime_too_long",
        "expires 601 s after issue",
        join(&sign_body(&long, &seed(1)), &fresh),
        NOW,
        Error::LifetimeTooLong,
    );

    let mut rotation = body.to_vec();
    rotation[25] = 0;
    case(
        "zero_rotation",
        "rotation of 0 s",
        join(&sign_body(&rotation, &seed(1)), &fresh),
        NOW,
        Error::InvalidRotation,
    );

    let mut origin = body.to_vec();
    origin[75..83].copy_from_slice(b"HTTPS://");
    case(
        "uppercase_origin",
        "origin not in canonical lowercase form",
        join(&sign_body(&origin, &seed(1)), &fresh),
        NOW,
        Error::InvalidOrigin,
    );

    case("too_long", "600 characters", format!("{PREFIX}{}", "A".repeat(592)), NOW, Error::TokenTooLong);

    // Inputs with several faults: the first step of PROTOCOL.md §3.4 that
    // fails decides the code.
    case(
        "too_long_without_prefix",
        "600 characters without the prefix: the prefix is checked first",
        "A".repeat(600),
        NOW,
        Error::NotAToken,
    );
    case(
        "not_a_token_nor_base64",
        "no prefix, and the text after the last dot is not base64url",
        "hello world.x".to_owned(),
        NOW,
        Error::NotAToken,
    );
    case(
        "unit_separator_is_not_white_space",
        "U+001F before the token: only Unicode White_Space is removed",
        format!("\u{1f}{text}"),
        NOW,
        Error::NotAToken,
    );
    case(
        "no_code_part_and_bad_version",
        "no code part, and the version byte is 0",
        format!("{PREFIX}AA"),
        NOW,
        Error::Truncated,
    );
    case("empty_code_part", "the code part is empty", format!("{PREFIX}AA."), NOW, Error::Truncated);
    case(
        "bad_version_and_bad_code_encoding",
        "version byte 2, and the code part has non-zero unused bits",
        format!("{PREFIX}Ag.AAAAA8-JQBLvcua06X"),
        NOW,
        Error::BadEncoding,
    );
    case(
        "cut_after_expires_at_with_zero_lifetime",
        "the bytes end after expires_at, which equals issued_at",
        format!("{PREFIX}AWcSwGhXZo-gAAAAAAAAAAUAAAAAAAAABQ.{fresh}"),
        NOW,
        Error::Truncated,
    );
    case(
        "bad_version_and_truncated",
        "version byte 2 in a body cut short: the version is read first",
        join(&[2], &fresh),
        NOW,
        Error::UnsupportedVersion(2),
    );
    case(
        "bad_origin_and_short_code",
        "an invalid origin, and a 13-byte code part: the layout is read before any field is judged",
        join(&sign_body(&with_origin(body, "http://[:]"), &seed(1)), &URL_SAFE_NO_PAD.encode([0u8; 13])),
        NOW,
        Error::Truncated,
    );

    // Origins that look like origins but break §2.1, each inside a token
    // that is otherwise genuine.
    for (name, description, origin) in [
        ("ipv6_lone_colon", "IPv6 literal [:]", "http://[:]"),
        ("ipv6_one_digit", "IPv6 literal [d]", "http://[d]"),
        ("ipv6_dotted_pair", "IPv6 literal [1.2]", "http://[1.2]"),
        ("ipv6_nine_groups", "IPv6 literal with nine groups", "http://[1:2:3:4:5:6:7:8:9]"),
        (
            "ipv6_mixed_notation",
            "IPv4-mapped address in dotted form; canonical is [::ffff:7f00:1]",
            "http://[::ffff:127.0.0.1]",
        ),
        ("ipv6_not_compressed", "IPv6 loopback written out in full; canonical is [::1]", "http://[0:0:0:0:0:0:0:1]"),
        ("port_with_plus", "port +80", "http://a:+80"),
        ("port_plus_zero", "port +0, which is port 0", "http://a:+0"),
        ("empty_label", "a host with an empty label", "https://login..example.com"),
        ("short_ipv4", "127.1, which a browser writes as 127.0.0.1", "http://127.1"),
    ] {
        case(
            name,
            description,
            join(&sign_body(&with_origin(body, origin), &seed(1)), &fresh),
            NOW,
            Error::InvalidOrigin,
        );
    }

    // The last second of u64 time. With the largest step the code's
    // shown_at is past 2^64 − 1: exact arithmetic puts it after expires_at.
    let mut end = claims(0xa1, "Example Mail");
    end.issued_at = UnixTime::from_secs(u64::MAX - 300);
    end.expires_at = UnixTime::from_secs(u64::MAX);
    let end = server_key().issue(end).unwrap();
    case(
        "code_step_past_end_of_time",
        "a genuine code whose issued_at + step × rotation exceeds 2^64 − 1",
        end.at_step(&code_secret(), u32::MAX),
        u64::MAX - 1,
        Error::BadCode,
    );
    case(
        "expired_at_end_of_time",
        "expires_at = 2^64 − 1, presented at that second",
        end.at_step(&code_secret(), 0),
        u64::MAX,
        Error::Expired,
    );

    cases
}

/// `body` with its origin replaced; the service name stays.
fn with_origin(body: &[u8], origin: &str) -> Vec<u8> {
    let origin_len = usize::from(body[74]);
    let mut out = body[..74].to_vec();
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&body[75 + origin_len..]);
    out
}

pub(crate) enum Purpose {
    Register,
    Login,
    Deny,
    Enroll,
    Rekey,
}

pub(crate) struct ResponseCase {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) purpose: Purpose,
    pub(crate) request: serde_json::Value,
    pub(crate) error: Error,
}

/// Verifies a response as the server would, against the fixture's fresh token
/// and, for logins, the fixture's registered account key.
pub(crate) fn check_response(purpose: &Purpose, request: &serde_json::Value) -> Result<(), Error> {
    let token = check_token(request["token"].as_str().unwrap(), &server_key().public_key(), NOW)?;
    let fresh = code_secret().verify(&token, UnixTime::from_secs(NOW), WINDOW)?;
    match purpose {
        Purpose::Register => {
            let req: RegisterRequest = serde_json::from_value(request.clone()).unwrap();
            req.verify(fresh).map(drop)
        }
        Purpose::Login => {
            let req: LoginRequest = serde_json::from_value(request.clone()).unwrap();
            req.verify(fresh, &account_key().public_key()).map(drop)
        }
        Purpose::Deny => {
            let req: DenyRequest = serde_json::from_value(request.clone()).unwrap();
            req.verify(fresh).map(drop)
        }
        Purpose::Enroll => {
            let req: EnrollRequest = serde_json::from_value(request.clone()).unwrap();
            req.verify(fresh).map(drop)
        }
        Purpose::Rekey => {
            let req: RekeyRequest = serde_json::from_value(request.clone()).unwrap();
            req.verify(fresh, &account_key().public_key()).map(drop)
        }
    }
}

pub(crate) fn alice() -> AccountName {
    AccountName::parse("alice").unwrap()
}

pub(crate) fn response_cases() -> Vec<ResponseCase> {
    let token = token();
    let key = account_key();
    let register = serde_json::to_value(RegisterRequest::sign(&token, &alice(), &key)).unwrap();
    let login = serde_json::to_value(LoginRequest::sign(&token, &alice(), &key)).unwrap();

    // The same account and key, but the token of another service on the
    // same server: its signature must not carry over.
    let other_service = server_key().issue(claims(0xa2, "Example Mail")).unwrap();
    let other_text = other_service.at_step(&code_secret(), 3);
    let other_token = UnverifiedToken::parse(&other_text).unwrap().verify(&server_key().public_key()).unwrap();

    let mut cases = Vec::new();
    let mut case = |name, description, purpose, request, error| {
        cases.push(ResponseCase { name, description, purpose, request, error });
    };

    let mut wrong_purpose = register.clone();
    wrong_purpose["signature"] = login["signature"].clone();
    case(
        "login_signature_as_register",
        "a login signature presented as a registration",
        Purpose::Register,
        wrong_purpose,
        Error::BadSignature,
    );

    let mut wrong_purpose = login.clone();
    wrong_purpose["signature"] = register["signature"].clone();
    case(
        "register_signature_as_login",
        "a registration signature presented as a login",
        Purpose::Login,
        wrong_purpose,
        Error::BadSignature,
    );

    let deny = serde_json::to_value(DenyRequest::sign(&token, &key)).unwrap();
    let mut wrong_purpose = login.clone();
    wrong_purpose["signature"] = deny["signature"].clone();
    case(
        "deny_signature_as_login",
        "a refusal's signature presented as a login",
        Purpose::Login,
        wrong_purpose,
        Error::BadSignature,
    );

    let mut other = login.clone();
    other["signature"] =
        serde_json::to_value(LoginRequest::sign(&other_token, &alice(), &key)).unwrap()["signature"].clone();
    case(
        "login_signed_for_other_service",
        "signed for another service's token",
        Purpose::Login,
        other,
        Error::BadSignature,
    );

    let mut other = register.clone();
    other["signature"] =
        serde_json::to_value(RegisterRequest::sign(&other_token, &alice(), &key)).unwrap()["signature"].clone();
    case(
        "register_signed_for_other_service",
        "registration signed for another service's token",
        Purpose::Register,
        other,
        Error::BadSignature,
    );

    // Same token bytes, but the origin inside the signed string changed.
    let mut signed = Vec::new();
    signed.extend_from_slice(b"sesame/1/login\0");
    signed.extend_from_slice(&(token.as_str().len() as u16).to_be_bytes());
    signed.extend_from_slice(token.as_str().as_bytes());
    let evil = b"https://login.example.org";
    signed.push(evil.len() as u8);
    signed.extend_from_slice(evil);
    signed.extend_from_slice(&[0xa1; 16]);
    signed.push(5);
    signed.extend_from_slice(b"alice");
    let seed4 = seed(4);
    let evil_sig = ed25519_dalek::SigningKey::from_bytes(&seed4).sign(&signed);
    let mut other = login.clone();
    other["signature"] = URL_SAFE_NO_PAD.encode(evil_sig.to_bytes()).into();
    case("login_signed_for_other_origin", "signed over another origin", Purpose::Login, other, Error::BadSignature);

    let mut other = login.clone();
    other["account"] = "bob".into();
    case("login_for_other_account", "alice's signature presented for bob", Purpose::Login, other, Error::BadSignature);

    let earlier = base_token().at_step(&code_secret(), 2);
    let earlier = UnverifiedToken::parse(&earlier).unwrap().verify(&server_key().public_key()).unwrap();
    let mut other = login.clone();
    other["signature"] =
        serde_json::to_value(LoginRequest::sign(&earlier, &alice(), &key)).unwrap()["signature"].clone();
    case(
        "login_signed_for_other_step",
        "signed over the previous step's token text",
        Purpose::Login,
        other,
        Error::BadSignature,
    );

    let mut weak = register.clone();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    weak["public_key"] = URL_SAFE_NO_PAD.encode(identity).into();
    case(
        "weak_public_key",
        "registering the small-order identity point",
        Purpose::Register,
        weak,
        Error::WeakPublicKey,
    );

    // y = p + 10: reduced, it is a point of large order, but RFC 8032
    // §5.1.3 says decoding fails, so it is refused before any signature.
    let mut unreduced = [0xff; 32];
    unreduced[0] = 0xed + 10;
    unreduced[31] = 0x7f;
    let mut bad = register.clone();
    bad["public_key"] = URL_SAFE_NO_PAD.encode(unreduced).into();
    case("unreduced_public_key", "a public key whose y is p + 10", Purpose::Register, bad, Error::InvalidPublicKey);

    let mut bad = serde_json::to_value(DenyRequest::sign(&token, &key)).unwrap();
    bad["public_key"] = URL_SAFE_NO_PAD.encode(unreduced).into();
    case("unreduced_deny_key", "a refusal under a key whose y is p + 10", Purpose::Deny, bad, Error::InvalidPublicKey);

    let mut bad = register.clone();
    bad["public_key"] = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA".into();
    case(
        "negative_zero_x_public_key",
        "y = 1 with the sign bit set: x = 0 has no negative encoding",
        Purpose::Register,
        bad,
        Error::InvalidPublicKey,
    );

    let mut short = register.clone();
    short["public_key"] = URL_SAFE_NO_PAD.encode([7u8; 31]).into();
    case("short_public_key", "a 31-byte public key", Purpose::Register, short, Error::InvalidPublicKey);

    let mut bad = login.clone();
    bad["signature"] = URL_SAFE_NO_PAD.encode([0u8; 63]).into();
    case("short_signature", "a 63-byte signature", Purpose::Login, bad, Error::InvalidSignatureEncoding);

    let new_key = new_account_key();
    let enroll = serde_json::to_value(EnrollRequest::sign(&token, &alice(), &new_key, Some(&laptop()))).unwrap();
    let rekey = serde_json::to_value(RekeyRequest::sign(&token, &alice(), &key, &new_key)).unwrap();
    let register_new = serde_json::to_value(RegisterRequest::sign(&token, &alice(), &new_key)).unwrap();

    let mut other = enroll.clone();
    other["signature"] = register_new["signature"].clone();
    case(
        "register_signature_as_enroll",
        "a registration of the same account and key presented as an enrollment",
        Purpose::Enroll,
        other,
        Error::BadSignature,
    );

    let mut other = enroll.clone();
    other["account"] = "bob".into();
    case(
        "enroll_for_other_account",
        "an enrollment into alice presented for bob",
        Purpose::Enroll,
        other,
        Error::BadSignature,
    );

    let mut other = enroll.clone();
    other["label"] = "bad\u{202e}label".into();
    case(
        "enroll_label_with_bidi_control",
        "a label with a bidirectional control character",
        Purpose::Enroll,
        other,
        Error::InvalidKeyLabel,
    );

    let mut other = rekey.clone();
    other["signature"] = rekey["new_signature"].clone();
    case(
        "rekey_signed_by_new_key_only",
        "both signatures by the new key: the account's key never agreed",
        Purpose::Rekey,
        other,
        Error::BadSignature,
    );

    let mut other = rekey.clone();
    other["new_signature"] = rekey["signature"].clone();
    case(
        "rekey_without_proof_of_new_key",
        "both signatures by the current key: nothing shows the new key is held",
        Purpose::Rekey,
        other,
        Error::BadSignature,
    );

    let mut other = rekey.clone();
    other["public_key"] = key.public_key().to_base64().into();
    case(
        "rekey_to_other_key",
        "the signatures name one new key, the request another",
        Purpose::Rekey,
        other,
        Error::BadSignature,
    );

    let mut other = rekey.clone();
    other["signature"] = login["signature"].clone();
    case(
        "login_signature_as_rekey",
        "a login signature presented as a rekey",
        Purpose::Rekey,
        other,
        Error::BadSignature,
    );

    let mut bad = register.clone();
    bad["account"] = "<b>\nalice".into();
    case(
        "account_name_with_newline",
        "an account name with a control character",
        Purpose::Register,
        bad,
        Error::InvalidAccountName,
    );

    number_cases(&mut case);
    two_fault_cases(&mut case);
    cases
}

/// Number matching (PROTOCOL.md §14): the number is signed, so it cannot be
/// added, removed or changed after the fact.
fn number_cases(case: &mut impl FnMut(&'static str, &'static str, Purpose, serde_json::Value, Error)) {
    let token = token();
    let key = account_key();
    let matched = |n| Some(MatchNumber::new(n).unwrap());
    let login = serde_json::to_value(LoginRequest::sign(&token, &alice(), &key)).unwrap();
    let login_42 = serde_json::to_value(LoginRequest::sign_matched(&token, &alice(), &key, matched(42))).unwrap();

    let mut bad = login.clone();
    bad["number"] = 42.into();
    case(
        "number_added_after_signing",
        "a login signed without a number, sent with one",
        Purpose::Login,
        bad,
        Error::BadSignature,
    );
    let mut bad = login_42.clone();
    bad["number"] = 43.into();
    case("number_changed_after_signing", "signed with 42, sent with 43", Purpose::Login, bad, Error::BadSignature);
    let mut bad = login_42.clone();
    bad.as_object_mut().unwrap().remove("number");
    case(
        "number_removed_after_signing",
        "signed with 42, sent without a number",
        Purpose::Login,
        bad,
        Error::BadSignature,
    );
    for (name, value) in [("number_below_range", 9), ("number_above_range", 100)] {
        let mut bad = login_42.clone();
        bad["number"] = value.into();
        case(name, "a number outside 10 to 99", Purpose::Login, bad, Error::InvalidNumber);
    }
    let register_42 = serde_json::to_value(RegisterRequest::sign_matched(&token, &alice(), &key, matched(42))).unwrap();
    let register_17 = serde_json::to_value(RegisterRequest::sign_matched(&token, &alice(), &key, matched(17))).unwrap();
    let mut bad = register_42;
    bad["signature"] = register_17["signature"].clone();
    case(
        "register_signed_for_other_number",
        "a registration signed with 17 sent as 42",
        Purpose::Register,
        bad,
        Error::BadSignature,
    );
}

/// Answers with two faults: the first in the order of PROTOCOL.md §6.6
/// (account, public key, label, number, signature) is the one reported, so
/// every implementation gives the same code.
fn two_fault_cases(case: &mut impl FnMut(&'static str, &'static str, Purpose, serde_json::Value, Error)) {
    let token = token();
    let key = account_key();
    let new_key = new_account_key();
    let register = serde_json::to_value(RegisterRequest::sign(&token, &alice(), &key)).unwrap();
    let enroll = serde_json::to_value(EnrollRequest::sign(&token, &alice(), &new_key, Some(&laptop()))).unwrap();
    let rekey = serde_json::to_value(RekeyRequest::sign(&token, &alice(), &key, &new_key)).unwrap();
    let short_signature: serde_json::Value = URL_SAFE_NO_PAD.encode([0u8; 63]).into();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak_key: serde_json::Value = URL_SAFE_NO_PAD.encode(identity).into();

    let mut bad = register.clone();
    bad["account"] = "".into();
    bad["public_key"] = weak_key.clone();
    case(
        "empty_account_and_weak_key",
        "the account is checked before the key",
        Purpose::Register,
        bad,
        Error::InvalidAccountName,
    );
    let mut bad = enroll.clone();
    bad["public_key"] = weak_key;
    bad["label"] = "bad\u{202e}label".into();
    case("weak_key_and_bad_label", "the key is checked before the label", Purpose::Enroll, bad, Error::WeakPublicKey);
    let mut bad = enroll;
    bad["label"] = "\u{200b}".into();
    bad["number"] = 7.into();
    case(
        "bad_label_and_bad_number",
        "the label is checked before the number",
        Purpose::Enroll,
        bad,
        Error::InvalidKeyLabel,
    );
    let mut bad = register;
    bad["number"] = 100.into();
    bad["signature"] = short_signature.clone();
    case(
        "bad_number_and_short_signature",
        "the number is checked before the signature",
        Purpose::Register,
        bad,
        Error::InvalidNumber,
    );
    let mut bad = rekey.clone();
    bad["signature"] = rekey["new_signature"].clone();
    bad["new_signature"] = short_signature;
    case(
        "rekey_wrong_signature_and_short_new_signature",
        "the current key's signature is checked, whole, before the new key's",
        Purpose::Rekey,
        bad,
        Error::BadSignature,
    );
}
