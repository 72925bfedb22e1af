//! Validation of nicknames, channel names and host names (docs/protocol.md, "Names").

/// Longest nickname, advertised as NICKLEN.
pub const NICKLEN: usize = 30;
/// Longest channel name including the `#`, advertised as CHANNELLEN.
pub const CHANNELLEN: usize = 64;
/// Longest user name kept from USER (longer ones are cut, as Ergo does).
pub const USERLEN: usize = 16;

const NICK_SPECIALS: &[u8] = b"[]\\`_^{|}";

/// Whether `nick` is a valid nickname: a letter or special first, then letters,
/// digits, specials and `-`, at most [`NICKLEN`] bytes.
pub fn is_valid_nick(nick: &[u8]) -> bool {
    let Some((&first, rest)) = nick.split_first() else {
        return false;
    };
    nick.len() <= NICKLEN
        && (first.is_ascii_alphabetic() || NICK_SPECIALS.contains(&first))
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || NICK_SPECIALS.contains(&b))
}

/// Whether `name` is a valid channel name: `#` then 1 to 63 bytes of UTF-8 text with
/// no space, comma, BEL, NUL, CR or LF.
pub fn is_valid_channel(name: &[u8]) -> bool {
    name.len() >= 2
        && name.len() <= CHANNELLEN
        && name[0] == b'#'
        && std::str::from_utf8(name).is_ok()
        && !name[1..]
            .iter()
            .any(|b| matches!(b, b' ' | b',' | 0x07 | 0 | b'\r' | b'\n'))
}

/// Longest host name (RFC 1035: 253 characters written without the final dot).
pub const HOSTLEN: usize = 253;

/// Whether `host` is a DNS host name a gateway may give for a user (WEBIRC): labels
/// of letters, digits and `-` (not first or last), 1 to 63 bytes each, at most
/// [`HOSTLEN`] in all, and a last label that is not all digits, so an address
/// (`192.0.2.7`) never passes for a name. Such a name is safe in `nick!user@host`.
pub fn is_valid_hostname(host: &[u8]) -> bool {
    let label_ok = |label: &[u8]| {
        (1..=63).contains(&label.len())
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    };
    host.len() <= HOSTLEN
        && host.split(|&b| b == b'.').all(label_ok)
        && host
            .rsplit(|&b| b == b'.')
            .next()
            .is_some_and(|last| !last.iter().all(u8::is_ascii_digit))
}

/// Makes a USER name safe to show in `nick!~user@host`: keeps the characters valid
/// in a nickname, cuts to [`USERLEN`], and falls back to `user` if nothing is left.
pub fn sanitize_user(user: &[u8]) -> String {
    let kept: String = user
        .iter()
        .filter(|&&b| b.is_ascii_alphanumeric() || b == b'-' || NICK_SPECIALS.contains(&b))
        .take(USERLEN)
        .map(|&b| b as char)
        .collect();
    if kept.is_empty() {
        "user".to_owned()
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames() {
        for ok in ["a", "Alice", "[x]", "`b^", "n-1", "_", &"x".repeat(30)] {
            assert!(is_valid_nick(ok.as_bytes()), "{ok} should be valid");
        }
        for bad in [
            "",
            "1abc",
            "-a",
            "a b",
            "a,b",
            "a!b",
            "#c",
            &"x".repeat(31),
            "é",
        ] {
            assert!(!is_valid_nick(bad.as_bytes()), "{bad} should be invalid");
        }
    }

    #[test]
    fn host_names() {
        for ok in [
            "localhost",
            "3-100-51-198.location.example-isp.com",
            "a.b",
            &format!("{}.example", "h".repeat(63)),
        ] {
            assert!(is_valid_hostname(ok.as_bytes()), "{ok} should be valid");
        }
        for bad in [
            "",
            "198.51.100.3",
            "2001:db8::1",
            "-a.example",
            "a-.example",
            "a..example",
            "example.",
            "a b.example",
            "a@b.example",
            "a!b",
            "\u{e9}.example",
            &format!("{}.example", "h".repeat(64)),
            &format!("{}.example", "h.".repeat(124)),
        ] {
            assert!(
                !is_valid_hostname(bad.as_bytes()),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn channel_names() {
        for ok in [
            "#a",
            "#rust-lang",
            "#ünïcode",
            &format!("#{}", "c".repeat(63)),
        ] {
            assert!(is_valid_channel(ok.as_bytes()), "{ok} should be valid");
        }
        for bad in [
            "#",
            "a",
            "&local",
            "#a b",
            "#a,b",
            "#a\x07",
            &format!("#{}", "c".repeat(64)),
        ] {
            assert!(!is_valid_channel(bad.as_bytes()), "{bad} should be invalid");
        }
        assert!(!is_valid_channel(b"#\xff"));
    }

    #[test]
    fn user_names_are_cut_and_cleaned() {
        assert_eq!(sanitize_user(b"guest"), "guest");
        assert_eq!(sanitize_user(b"a@b!c"), "abc");
        assert_eq!(sanitize_user(b"@@@"), "user");
        assert_eq!(sanitize_user(&[b'u'; 40]).len(), USERLEN);
    }
}
