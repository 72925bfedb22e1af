//! Wildcard masks (`*` and `?`) under the `ascii` casemapping: ban masks, WHO, LIST.
//!
//! Pure functions only: callers decide what a mask is matched against.

/// Longest ban mask kept (longer ones are refused, as a nick!user@host never is).
pub const MAX_BAN_MASK: usize = 128;

/// Whether `text` matches `pattern`, where `*` is any run of bytes and `?` any one
/// byte; letters compare ignoring ASCII case. Linear backtracking on the last `*`, so
/// a hostile pattern costs O(pattern × text), never exponential time.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether `pattern` has a wildcard in it.
pub fn has_wildcards(pattern: &[u8]) -> bool {
    pattern.iter().any(|&c| c == b'*' || c == b'?')
}

/// Completes a ban mask to the `nick!user@host` form, as Ergo and InspIRCd do:
/// `bob` is `bob!*@*`, `*@host` is `*!*@host`, `bob!u` is `bob!u@*`. Returns `None`
/// for a mask that cannot be one (empty, too long, a space, or a leading `:`).
///
/// The account extban is kept as given: `$a` (anyone logged in) and `$a:pattern` (an
/// account name, wildcards allowed), as Solanum and InspIRCd spell it; `$` followed
/// by anything else is refused.
pub fn canonical_ban_mask(mask: &str) -> Option<String> {
    if mask.is_empty()
        || mask.len() > MAX_BAN_MASK
        || mask.starts_with(':')
        || mask
            .bytes()
            .any(|b| b == b' ' || b == b',' || b.is_ascii_control())
    {
        return None;
    }
    if let Some(extban) = mask.strip_prefix('$') {
        let valid = extban == "a" || extban.strip_prefix("a:").is_some_and(|p| !p.is_empty());
        return valid.then(|| mask.to_owned());
    }
    let canonical = match (mask.contains('!'), mask.contains('@')) {
        (true, true) => mask.to_owned(),
        (true, false) => format!("{mask}@*"),
        (false, true) => format!("*!{mask}"),
        (false, false) => format!("{mask}!*@*"),
    };
    Some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_case() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("bob!*@*", "Bob!~bob@127.0.0.1", true),
            ("BOB!*@*", "bob!~bob@127.0.0.1", true),
            ("b?b!*@*", "bib!~u@h", true),
            ("b?b!*@*", "bb!~u@h", false),
            ("*!*@127.0.0.*", "x!~y@127.0.0.1", true),
            ("*!*@127.0.0.*", "x!~y@10.0.0.1", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*rust*", "#Rust-lang", true),
            ("", "", true),
            ("", "x", false),
            ("abc", "ab", false),
            ("a**", "a", true),
        ];
        for &(pattern, text, expected) in cases {
            assert_eq!(
                wildcard_match(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn account_extbans_are_kept_and_other_extbans_refused() {
        assert_eq!(canonical_ban_mask("$a").as_deref(), Some("$a"));
        assert_eq!(canonical_ban_mask("$a:Bob*").as_deref(), Some("$a:Bob*"));
        assert_eq!(canonical_ban_mask("$a:"), None);
        assert_eq!(canonical_ban_mask("$x:foo"), None);
        assert_eq!(canonical_ban_mask("$"), None);
    }

    #[test]
    fn a_hostile_pattern_is_not_exponential() {
        let pattern = "*a".repeat(50) + "b";
        let text = "a".repeat(400);
        assert!(!wildcard_match(pattern.as_bytes(), text.as_bytes()));
    }

    #[test]
    fn ban_masks_are_completed() {
        assert_eq!(canonical_ban_mask("bob").as_deref(), Some("bob!*@*"));
        assert_eq!(canonical_ban_mask("*@host").as_deref(), Some("*!*@host"));
        assert_eq!(canonical_ban_mask("bob!u").as_deref(), Some("bob!u@*"));
        assert_eq!(canonical_ban_mask("a!b@c").as_deref(), Some("a!b@c"));
        assert_eq!(canonical_ban_mask(""), None);
        assert_eq!(canonical_ban_mask(":x"), None);
        assert_eq!(canonical_ban_mask("a b"), None);
        assert_eq!(canonical_ban_mask(&"x".repeat(200)), None);
    }
}
