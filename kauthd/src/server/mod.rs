//! The socket edge: the listener and its event loop, connection slots and
//! deadlines, the workers that run requests, who is asking,
//! the client's fields, refusals, and the thin `api/` that translates a
//! request into a domain call and its answer.

pub mod access;
pub mod admission;
pub mod api;
pub mod caller_cache;
pub mod client_fields;
pub mod conn_io;
pub mod connection;
pub mod event_loop;
pub mod frame_buf;
pub mod listener;
pub mod next_frame;
pub mod refusal_log;
pub mod response_frame;
pub mod systemd;
pub mod workers;
