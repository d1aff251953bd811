//! Local users and groups, read straight from `/etc/passwd` and
//! `/etc/group`. kauthd never calls NSS (getpwnam and friends): an NSS
//! module that asks kauthd would deadlock, and panel users need no system
//! account.

use std::path::Path;

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixGroup {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses passwd(5) text; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<UnixUser> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            if name.is_empty() || name.starts_with('#') || name.starts_with('+') {
                return None;
            }
            Some(UnixUser {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
        .collect()
}

/// Parses group(5) text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<UnixGroup> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let gid = f.next()?.parse().ok()?;
            let members = f.next().unwrap_or("");
            if name.is_empty() || name.starts_with('#') || name.starts_with('+') {
                return None;
            }
            Some(UnixGroup {
                name: name.to_owned(),
                gid,
                members: members
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The local user with this uid, if `/etc/passwd` has one.
pub fn user_by_uid(uid: u32) -> Option<UnixUser> {
    parse_passwd(&read(Path::new(PASSWD)))
        .into_iter()
        .find(|u| u.uid == uid)
}

/// The local user with this name, if `/etc/passwd` has one.
pub fn user_by_name(name: &str) -> Option<UnixUser> {
    parse_passwd(&read(Path::new(PASSWD)))
        .into_iter()
        .find(|u| u.name == name)
}

/// The local group with this name, if `/etc/group` has one.
pub fn group_by_name(name: &str) -> Option<UnixGroup> {
    parse_group(&read(Path::new(GROUP)))
        .into_iter()
        .find(|g| g.name == name)
}

/// Whether `user` belongs to `group`, as primary group or listed member.
pub fn is_member(user: &UnixUser, group: &UnixGroup) -> bool {
    user.gid == group.gid || group.members.contains(&user.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse_and_junk_is_skipped() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # comment\n\
                    broken line\n\
                    ann:x:1000:1000:Ann,,,:/home/ann:/bin/sh\n";
        let users = parse_passwd(text);
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].name, "ann");
        assert_eq!(users[1].uid, 1000);
    }

    #[test]
    fn group_membership_counts_primary_and_listed() {
        let groups = parse_group("staff:x:50:bob,carol\nann:x:1000:\n");
        let ann = UnixUser {
            name: "ann".into(),
            uid: 1000,
            gid: 1000,
        };
        let bob = UnixUser {
            name: "bob".into(),
            uid: 1001,
            gid: 1001,
        };
        assert!(is_member(&ann, &groups[1]));
        assert!(!is_member(&ann, &groups[0]));
        assert!(is_member(&bob, &groups[0]));
    }
}
