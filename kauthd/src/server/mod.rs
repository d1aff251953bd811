//! The socket edge: the listener, one connection at a time, who is asking,
//! the client's fields, refusals, and the thin `api/` that translates a
//! request into a domain call and its answer.

pub mod access;
pub mod api;
pub mod client_fields;
pub mod connection;
pub mod listener;
pub mod refusal_log;
pub mod response_frame;
