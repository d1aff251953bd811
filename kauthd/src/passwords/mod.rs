//! Account passwords: hashing, the strength policy, the argon2 queue and
//! reset tokens.

pub mod argon2_pool;
pub mod hashing;
pub mod reset_token;
pub mod strength;
