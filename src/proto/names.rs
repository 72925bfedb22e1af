//! Validation of nicknames and channel names (docs/protocol.md, "Names").

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
