//! Reading a token from a photo or screenshot of the login page's QR code.

use std::path::{Path, PathBuf};

use sesame_proto::UnverifiedToken;

use crate::Error;

/// Images larger than this are refused before decoding, so that a hostile
/// file cannot make the decoder allocate gigabytes.
const MAX_PIXELS: u64 = 64_000_000;

/// Whether a QR code's text is meant for Sesame: a token, or a link to the
/// web authenticator (PROTOCOL.md §3.6), even a faulty one, so that its
/// fault is reported rather than the code skipped. A Wi-Fi password or
/// another site's address is not.
fn is_sesame(text: &str) -> bool {
    !matches!(UnverifiedToken::read(text), Err(sesame_proto::Error::NotAToken | sesame_proto::Error::BadLink))
}

/// The text of the first QR code, across `images` in order, that is meant
/// for Sesame (a token or a link). Codes that are not (a Wi-Fi password,
/// another URL) are skipped.
pub(crate) fn token_from_images(images: &[PathBuf]) -> Result<String, Error> {
    let mut seen = Vec::new();
    for path in images {
        for text in qr_texts(path)? {
            if is_sesame(&text) {
                return Ok(text.trim().to_owned());
            }
        }
        seen.push(path.display().to_string());
    }
    Err(Error::NoQrCode(seen.join(", ")))
}

/// The text of the first QR code in an image held in memory (a pasted
/// screenshot, a camera frame) that parses as a Sesame token. The window
/// uses this, so that it reads codes exactly as `scan` does.
pub(crate) fn token_from_bytes(bytes: &[u8]) -> Result<String, Error> {
    let what = Path::new("the picture");
    decoded_texts(what, std::io::Cursor::new(bytes))?
        .into_iter()
        .find(|text| is_sesame(text))
        .map(|text| text.trim().to_owned())
        .ok_or_else(|| Error::NoQrCode(what.display().to_string()))
}

/// Every QR code that decodes in one image.
fn qr_texts(path: &Path) -> Result<Vec<String>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::Image { path: path.to_owned(), reason: e.to_string() })?;
    decoded_texts(path, std::io::BufReader::new(file))
}

/// Every QR code that decodes in the image `source` holds; `path` names it
/// in errors. The size is checked from the header before any pixel is read.
fn decoded_texts<R: std::io::BufRead + std::io::Seek>(path: &Path, source: R) -> Result<Vec<String>, Error> {
    let fail = |reason: String| Error::Image { path: path.to_owned(), reason };
    let reader = image::ImageReader::new(source).with_guessed_format().map_err(|e| fail(e.to_string()))?;
    let decoder = reader.into_decoder().map_err(|e| fail(e.to_string()))?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(fail(format!("the image is too large ({width}×{height})")));
    }
    let image = image::DynamicImage::from_decoder(decoder).map_err(|e| fail(e.to_string()))?.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    Ok(prepared.detect_grids().into_iter().filter_map(|grid| grid.decode().ok().map(|(_, text)| text)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_text() -> String {
        use sesame_proto::{
            ChallengeId, FreshnessSecret, Nonce, Origin, ServerKey, ServiceId, ServiceName, TokenClaims, UnixTime,
        };
        let claims = TokenClaims {
            origin: Origin::parse("https://login.example.com").expect("origin"),
            service_id: ServiceId([4; 16]),
            service_name: ServiceName::parse("Example").expect("name"),
            challenge_id: ChallengeId([5; 16]),
            nonce: Nonce([6; 16]),
            issued_at: UnixTime::from_secs(1_767_225_600),
            expires_at: UnixTime::from_secs(1_767_225_900),
            rotation_secs: 3,
        };
        let base = ServerKey::from_seed(&[1; 32]).issue(claims).expect("issue");
        base.at_step(&FreshnessSecret::from_bytes([7; 32]), 1)
    }

    fn qr_png(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        let code = qrcode::QrCode::new(text.as_bytes()).expect("QR code");
        code.render::<image::Luma<u8>>().min_dimensions(300, 300).build().save(&path).expect("save");
        path
    }

    #[test]
    fn finds_the_token_and_skips_other_qr_codes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = token_text();
        let other = qr_png(dir.path(), "wifi.png", "WIFI:S:home;T:WPA;P:secret;;");
        let sesame = qr_png(dir.path(), "login.png", &token);
        assert_eq!(token_from_images(&[other, sesame]).expect("token found"), token);
    }

    #[test]
    fn finds_the_link_a_login_page_shows_and_skips_other_addresses() {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = format!("https://login.example.com/app#{}", token_text());
        let other = qr_png(dir.path(), "shop.png", "https://shop.example.com/app#sale");
        let sesame = qr_png(dir.path(), "login.png", &link);
        assert_eq!(token_from_images(&[other, sesame]).expect("link found"), link);
    }

    #[test]
    fn refuses_a_file_that_is_not_an_image() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("note.png");
        std::fs::write(&path, b"not an image").expect("write");
        assert!(matches!(token_from_images(&[path]), Err(Error::Image { .. })));
    }

    #[test]
    fn finds_nothing_in_a_blank_image() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("blank.png");
        image::GrayImage::from_pixel(64, 64, image::Luma([255])).save(&path).expect("save");
        assert!(matches!(token_from_images(&[path]), Err(Error::NoQrCode(_))));
    }
}
