//! `GET /api/challenges/{cid}/events`: the waiting page's live feed, as
//! Server-Sent Events.
//!
//! The handler subscribes to the challenge *before* it reads the stored
//! state, so a result stored in between is either in what it reads or wakes
//! it afterwards: nothing can be lost. A reconnecting client (with or without
//! `Last-Event-ID`) simply gets the current state again.
//!
//! A waiting stream costs one HMAC per rotation and nothing else: the base
//! token and the code secret are read once and kept in the stream, and the
//! database is read again only when the bus says the challenge changed.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::{stream, Stream, StreamExt as _};
use serde::Serialize;
use sesame_proto::{wire::ErrorBody, BaseToken, FreshnessSecret, UnixTime};
use utoipa::ToSchema;

use super::Challenges;
use super::StatusView;
use crate::{
    bus::Subscription, error::Result, http::extract::ClientInfo, http::responses::BrowserErrors, state::AppState,
};

/// Keep-alive comments keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The challenge's live feed, for the browser that holds its binding cookie.
///
/// Events: `status` (the JSON of the status URL) first and on every change,
/// the stream ending after a final one; `token` (`{"token", "step"}`) while
/// pending, at once and then every rotation step. Comments every 15 s keep
/// the stream alive.
#[utoipa::path(
    get,
    path = "/api/challenges/{cid}/events",
    operation_id = "challenge_events",
    tag = "challenges",
    params(("cid" = String, Path, description = "The challenge id.")),
    security(("binding_cookie" = [])),
    responses(
        (status = 200, description = "Server-Sent Events until the challenge ends.", content_type = "text/event-stream", body = EventFields),
        (status = 404, description = "`unknown_challenge`.", body = ErrorBody),
        (status = 429, description = "`too_many_streams`: this challenge or this address has as many open streams as the server allows.", body = ErrorBody, headers(
            ("Retry-After" = u64, description = "Seconds until the same request may pass."),
        )),
        (status = 503, description = "`unavailable`: the server cannot follow the challenge (its Redis is away).", body = ErrorBody),
        BrowserErrors,
    ),
)]
pub async fn handler(
    State(state): State<AppState>,
    State(challenges): State<Challenges>,
    Path(cid): Path<String>,
    client: ClientInfo,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // Subscribe first, then read: a result stored in between is either in
    // what is read or wakes the subscription. The one read also serves the
    // binding check. A request without any binding cookie is turned away
    // before it costs a subscription.
    let id = super::parse_id(&cid)?;
    super::binding(&state, &headers, &id)?;
    let subscription = state.bus.subscribe(id).await?;
    let row = super::for_browser(&state, &challenges, &cid, &headers).await?;
    // Counted only after the binding check, so that someone who has only
    // the token cannot take the browser's places; the guard counts this
    // stream until the stream is dropped.
    let open = state.limits.streams.open(row.id, client.ip)?;
    let view = StatusView::of(&row);

    let mut first = vec![status_event(&view)];
    let watch = if view.status.is_final() {
        None
    } else {
        let base = BaseToken::from_stored(row.base_token.clone(), state.identity.public_key())?;
        let secret = row.code_secret.clone();
        let step = base.step_at(state.clock.now());
        first.push(token_event(&base, &secret, step));
        Some(Watch { challenges, subscription, base, secret, step, last: view })
    };
    let stream = stream::iter(first.into_iter().map(Ok))
        .chain(stream::unfold(watch, |watch| async move {
            let mut watch = watch?;
            let (event, done) = watch.next().await;
            Some((Ok(event), if done { None } else { Some(watch) }))
        }))
        // The stream owns the guard: the count drops when the browser goes
        // away or the stream ends.
        .map(move |event| {
            let _counted = &open;
            event
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One pending challenge being watched.
struct Watch {
    challenges: Challenges,
    subscription: Subscription,
    base: BaseToken,
    secret: FreshnessSecret,
    /// The step of the last token sent.
    step: u32,
    /// The last status sent.
    last: StatusView,
}

impl Watch {
    /// Waits for the next thing worth telling the page. Returns the event and
    /// whether the stream ends after it.
    async fn next(&mut self) -> (Event, bool) {
        loop {
            let now = self.challenges.now();
            let claims = self.base.claims();
            let rotation = u64::from(claims.rotation_secs);
            let next_step_at = claims.issued_at.as_secs() + (u64::from(self.step) + 1) * rotation;
            let expires_at = claims.expires_at;
            tokio::select! {
                () = self.subscription.changed() => {
                    if let Some(done) = self.reread().await {
                        crate::metrics::answer_delivered(if done.1 { self.subscription.published_at() } else { 0 });
                        return done;
                    }
                }
                () = sleep_until(now, UnixTime::from_secs(next_step_at)) => {
                    let step = self.base.step_at(self.challenges.now());
                    // The clock may not have reached the step yet (whole
                    // seconds); then just wait again.
                    let shown_at = claims.issued_at.as_secs() + u64::from(step) * rotation;
                    if step > self.step && UnixTime::from_secs(shown_at) < expires_at {
                        self.step = step;
                        return (token_event(&self.base, &self.secret, step), false);
                    }
                }
                () = sleep_until(now, expires_at) => {
                    if let Some(done) = self.reread().await {
                        return done;
                    }
                }
            }
        }
    }

    /// Reads the stored state (expiring it if due) and returns a status event
    /// if it differs from the last one sent.
    async fn reread(&mut self) -> Option<(Event, bool)> {
        let id = self.base.claims().challenge_id;
        let view = match self.challenges.current(&id).await {
            Ok(row) => StatusView::of(&row),
            Err(e) => {
                // A database hiccup: the page keeps its last state and the
                // next notice or tick tries again.
                tracing::warn!(challenge = %id, error = %e, "cannot read a watched challenge");
                return None;
            }
        };
        if view == self.last {
            return None;
        }
        let event = status_event(&view);
        let done = view.status.is_final();
        self.last = view;
        Some((event, done))
    }
}

/// Sleeps until the clock should read `at`. The clock has whole seconds, so
/// a wake-up may come up to a second early; callers re-check the time. A
/// floor of a quarter second keeps that re-check from spinning.
async fn sleep_until(now: UnixTime, at: UnixTime) {
    let secs = at.saturating_since(now);
    tokio::time::sleep(Duration::from_secs(secs).max(Duration::from_millis(250))).await;
}

/// One event of the feed, as the fields of a Server-Sent Event.
#[derive(ToSchema)]
#[schema(as = ChallengeEvent)]
#[allow(dead_code)] // Only its schema is used; `status_event` and `token_event` make the events.
struct EventFields {
    /// `status` or `token`.
    #[schema(pattern = "^(status|token)$")]
    event: String,
    /// `status-{status}-{hint}` or `token-{step}`.
    #[schema(pattern = "^(status-[a-z]+-[a-z_]+|token-[0-9]+)$")]
    id: String,
    /// JSON: a `status` event carries what the status URL answers
    /// (ChallengeStatus), a `token` event `{"token": text, "step": n}`.
    data: String,
}

#[derive(Debug, Serialize)]
struct TokenData<'a> {
    token: &'a str,
    step: u32,
}

fn token_event(base: &BaseToken, secret: &FreshnessSecret, step: u32) -> Event {
    let token = base.at_step(secret, step);
    Event::default()
        .event("token")
        .id(format!("token-{step}"))
        .json_data(TokenData { token: &token, step })
        .expect("token data serialises")
}

fn status_event(view: &StatusView) -> Event {
    Event::default()
        .event("status")
        .id(format!("status-{}-{}", view.status.as_str(), view.hint))
        .json_data(view)
        .expect("status data serialises")
}
