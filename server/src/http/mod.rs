//! The web's utilities, shared by every feature: cookies and the
//! same-origin check, extractors, rate limits, the layers around the router
//! and the API's shared error rows.

pub mod cookie;
pub mod extract;
pub mod limit;
pub mod middleware;
pub mod responses;
