//! Plain regression tests for bugs the property-based fuzz tests
//! (`fuzz_parsers.rs`) found, each named for what must hold.

use kauthd::config::Config;
use kauthd::twofactor::google_auth;

#[test]
fn too_many_argon2_lanes_are_named_and_do_not_overflow() {
    // 8 KiB × 2^29 lanes overflowed a u32 (a panic in a debug build); and
    // 3000 lanes were blamed on argon2_memory_kib, which was not set.
    for lanes in [3000u32, 1 << 29, u32::MAX] {
        let text = format!("[password]\nargon2_parallelism = {lanes}\n");
        let message = Config::parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("`password.argon2_parallelism`"),
            "{lanes}: {message}"
        );
    }
}

#[test]
fn a_bad_item_on_its_own_line_of_an_array_names_the_key() {
    // toml's message showed only the line of the item (`  false,`).
    let text = "[policy]\nrequire_users = [\n  \"ann\",\n  false,\n]\n";
    let message = Config::parse(text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.starts_with("key `policy.require_users[1]`"),
        "{message}"
    );
}

#[test]
fn unknown_option_names_are_escaped_before_they_are_shown() {
    // The names end up in `kauthctl import` output: an escape sequence in
    // a user's file must not reach the admin's terminal as is.
    let text = "JDA6UFXTD3WL3CE352WY2YOUL4\n\" TOTP_AUTH\n\" X\u{1b}[2J\u{7}\n";
    let file = match google_auth::parse(text) {
        Ok(file) => file,
        Err(e) => panic!("should parse: {e}"),
    };
    assert_eq!(file.ignored_options, ["X\\x1b[2J\\x07"]);
}
