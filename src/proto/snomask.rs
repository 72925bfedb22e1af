//! Server notice masks (snomasks): which kinds of server notices an operator with user
//! mode `+s` receives, as letters, the way InspIRCd and Solanum spell them. Pure: the
//! mask's parsing and display; who gets which notice is the shard's
//! (`crate::shard::server_notices`).

/// One kind of server notice, with its letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// `c`: users connecting (registering) and exiting.
    Connects,
    /// `k`: KILLs.
    Kills,
    /// `o`: users becoming operators.
    Opers,
    /// `b`: KLINEs and DLINEs set and lifted, and users they keep out.
    Bans,
    /// `f`: users cut off for flooding (`Excess Flood`) or as slow readers
    /// (`SendQ exceeded`).
    Floods,
}

impl NoticeKind {
    /// Every kind, in the order a mask lists its letters.
    pub const ALL: [NoticeKind; 5] = [
        NoticeKind::Bans,
        NoticeKind::Connects,
        NoticeKind::Floods,
        NoticeKind::Kills,
        NoticeKind::Opers,
    ];

    /// Its letter in a snomask.
    pub fn letter(self) -> char {
        match self {
            NoticeKind::Connects => 'c',
            NoticeKind::Kills => 'k',
            NoticeKind::Opers => 'o',
            NoticeKind::Bans => 'b',
            NoticeKind::Floods => 'f',
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn from_letter(letter: u8) -> Option<NoticeKind> {
        NoticeKind::ALL
            .into_iter()
            .find(|kind| kind.letter() == char::from(letter))
    }
}

/// A set of [`NoticeKind`]s; empty means user mode `-s`. One byte on each client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snomask(u8);

impl Snomask {
    /// Every kind: what `MODE nick +s` without a mask asks for.
    pub const ALL: Snomask = Snomask(0b1_1111);

    /// The set as bits, for a live upgrade's handover.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set [`Snomask::bits`] gave.
    pub fn from_bits(bits: u8) -> Snomask {
        Snomask(bits & Snomask::ALL.0)
    }

    /// No notices (`-s`).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether notices of `kind` are wanted.
    pub fn has(self, kind: NoticeKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// This mask changed by `change`: `+cf-k` adds and removes letters, a change
    /// without a sign adds (`ck` as `+ck`). Unknown letters are returned, for the
    /// reply that says so; the rest still apply.
    pub fn changed_by(self, change: &[u8]) -> (Snomask, Vec<char>) {
        let (mut mask, mut add, mut unknown) = (self.0, true, Vec::new());
        for &byte in change {
            match byte {
                b'+' => add = true,
                b'-' => add = false,
                b'*' if add => mask = Snomask::ALL.0,
                b'*' => mask = 0,
                _ => match NoticeKind::from_letter(byte) {
                    Some(kind) if add => mask |= kind.bit(),
                    Some(kind) => mask &= !kind.bit(),
                    None => unknown.push(char::from(byte)),
                },
            }
        }
        (Snomask(mask), unknown)
    }
}

impl std::fmt::Display for Snomask {
    /// `+bcfko` (the letters set, in [`NoticeKind::ALL`] order), `+` when empty.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("+")?;
        for kind in NoticeKind::ALL.into_iter().filter(|kind| self.has(*kind)) {
            write!(f, "{}", kind.letter())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_add_remove_and_name_unknown_letters() {
        let (mask, unknown) = Snomask::default().changed_by(b"+ck");
        assert_eq!(mask.to_string(), "+ck");
        assert!(unknown.is_empty());
        let (mask, unknown) = mask.changed_by(b"-c+fzb");
        assert_eq!(mask.to_string(), "+bfk");
        assert_eq!(unknown, ['z']);
        assert!(mask.has(NoticeKind::Floods) && !mask.has(NoticeKind::Connects));
        assert_eq!(Snomask::default().changed_by(b"*").0, Snomask::ALL);
        assert!(Snomask::ALL.changed_by(b"-*").0.is_empty());
        assert_eq!(Snomask::ALL.to_string(), "+bcfko");
    }
}
