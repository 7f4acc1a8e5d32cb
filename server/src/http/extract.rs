//! Extractors shared by the handlers.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// `Json<T>` whose rejections are our JSON errors instead of axum's text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        if !is_json(req.headers()) {
            return Err(Error::bad_request("unsupported_media_type", "send the body as application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
            _ => Error::bad_request("invalid_body", "the body could not be read"),
        })?;
        // Every request body is an object. serde would also read a struct
        // from an array of its fields in order, which no client means.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::bad_request("invalid_json", "the body must be a JSON object"));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// Whether the request says its body is JSON: `application/json`, or an
/// `application/…+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The requesting client as the authenticator will be shown it: its address
/// and user agent.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: String,
}

/// User agents are cut to this many bytes before they are stored.
const MAX_USER_AGENT: usize = 256;

/// The peers whose `X-Forwarded-For` is believed (`--trusted-proxy`): the
/// one part of the state that [`ClientInfo`] needs, which a state hands it
/// through `FromRef`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpAddr]>);

impl From<Vec<IpAddr>> for TrustedProxies {
    fn from(proxies: Vec<IpAddr>) -> Self {
        Self(proxies.into())
    }
}

impl<S> FromRequestParts<S> for ClientInfo
where
    TrustedProxies: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        // Tests that call the router directly have no socket; they count as
        // an unspecified address.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| addr.ip());
        let ip = client_ip(peer, &parts.headers, &TrustedProxies::from_ref(state).0);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| truncate(ua, MAX_USER_AGENT).to_owned())
            .unwrap_or_default();
        Ok(Self { ip, user_agent })
    }
}

/// The client's address. `X-Forwarded-For` is believed only from a trusted
/// proxy, and read from the right: each trusted proxy appends the address it
/// saw, so the first untrusted address from the right is the client, and
/// whatever a client wrote into the header itself stays to its left.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return ip,
            // A malformed entry means nothing to its left can be trusted.
            Err(_) => break,
        }
    }
    client
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn forwarded(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn ignores_forwarded_for_from_untrusted_peers() {
        let peer: IpAddr = [203, 0, 113, 9].into();
        assert_eq!(client_ip(peer, &forwarded("198.51.100.1"), &[]), peer);
    }

    #[test]
    fn takes_the_first_untrusted_hop_from_the_right() {
        let proxy: IpAddr = [10, 0, 0, 2].into();
        let headers = forwarded("1.2.3.4, 198.51.100.7, 10.0.0.3");
        let trusted = [proxy, [10, 0, 0, 3].into()];
        assert_eq!(client_ip(proxy, &headers, &trusted), IpAddr::from([198, 51, 100, 7]));
    }

    #[test]
    fn stops_at_a_malformed_hop() {
        let proxy: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(client_ip(proxy, &forwarded("1.2.3.4, junk"), &[proxy]), proxy);
    }
}
