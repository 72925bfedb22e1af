//! Nicknames: turning a login name into a valid IRC nick, and the fallback nicks tried
//! when the server answers 433 (nickname in use). Pure.

/// NICKLEN from the protocol: longer nicks are cut to this many bytes.
pub const MAX_NICK_BYTES: usize = 30;

/// How many nicks registration tries in all (the wanted one and its fallbacks)
/// before giving up with "nickname in use".
pub const MAX_NICK_ATTEMPTS: usize = 10;

/// Characters allowed anywhere in a nick besides ASCII letters.
const SPECIALS: &[char] = &['[', ']', '\\', '`', '_', '^', '{', '|', '}'];

/// The default nick: `$USER`, else `$LOGNAME`, else "guest", made valid.
pub fn default_nick() -> String {
    let login = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    sanitize(&login)
}

/// Makes `wanted` a valid nick: invalid characters dropped, a leading digit or `-`
/// prefixed with `_`, cut to [`MAX_NICK_BYTES`]; "guest" when nothing is left.
pub fn sanitize(wanted: &str) -> String {
    let mut nick: String = wanted
        .chars()
        .filter(|&c| c.is_ascii_alphanumeric() || c == '-' || SPECIALS.contains(&c))
        .collect();
    if nick.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        nick.insert(0, '_');
    }
    nick.truncate(MAX_NICK_BYTES);
    if nick.is_empty() {
        nick = "guest".to_string();
    }
    nick
}

/// The nick to try after `attempt` failed ones (0 is the wanted nick itself):
/// `nick`, `nick_`, `nick1`, `nick2`, ...; `None` past [`MAX_NICK_ATTEMPTS`].
/// The base is shortened so the suffix always fits NICKLEN.
pub fn candidate(base: &str, attempt: usize) -> Option<String> {
    if attempt >= MAX_NICK_ATTEMPTS {
        return None;
    }
    let suffix = match attempt {
        0 => String::new(),
        1 => "_".to_string(),
        n => (n - 1).to_string(),
    };
    let mut stem = base.to_string();
    stem.truncate(MAX_NICK_BYTES - suffix.len());
    Some(stem + &suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_valid_nicks() {
        assert_eq!(sanitize("alice"), "alice");
        assert_eq!(sanitize("[bot]_x-1^{|}`\\"), "[bot]_x-1^{|}`\\");
    }

    #[test]
    fn sanitize_fixes_invalid_names() {
        assert_eq!(sanitize("jean.dupont"), "jeandupont");
        assert_eq!(sanitize("1user"), "_1user");
        assert_eq!(sanitize("-dash"), "_-dash");
        assert_eq!(sanitize("zoë"), "zo");
        assert_eq!(sanitize(""), "guest");
        assert_eq!(sanitize("..."), "guest");
        assert_eq!(sanitize(&"a".repeat(50)).len(), MAX_NICK_BYTES);
    }

    #[test]
    fn candidates_follow_the_documented_sequence() {
        let seq: Vec<String> = (0..4).filter_map(|i| candidate("bob", i)).collect();
        assert_eq!(seq, vec!["bob", "bob_", "bob1", "bob2"]);
        assert_eq!(candidate("bob", MAX_NICK_ATTEMPTS), None);
    }

    #[test]
    fn candidates_fit_nicklen() {
        let long = "n".repeat(MAX_NICK_BYTES);
        for attempt in 0..MAX_NICK_ATTEMPTS {
            let nick = candidate(&long, attempt).unwrap();
            assert!(nick.len() <= MAX_NICK_BYTES, "{nick}");
        }
        assert_eq!(candidate(&long, 2).unwrap(), format!("{}1", &long[..29]));
    }
}
