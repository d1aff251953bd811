//! Account passwords: hashing, the strength policy, the argon2 queue,
//! reset tokens, and the steps every way of setting a password shares.

pub mod argon2_pool;
pub mod change;
pub mod hashing;
pub mod reset_token;
pub mod strength;
