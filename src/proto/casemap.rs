//! Case-insensitive names (CASEMAPPING=ascii) that hash and compare without allocating.
//!
//! A map keyed by [`CaselessKey`] can be looked up with a borrowed [`Caseless`] built
//! from any `&str`, so the message path never folds a name into a new `String`.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A borrowed name compared and hashed under the `ascii` casemapping.
#[repr(transparent)]
pub struct Caseless(str);

impl Caseless {
    /// Views `name` as a case-insensitive name.
    pub fn new(name: &str) -> &Caseless {
        // SAFETY: `Caseless` is `repr(transparent)` over `str`.
        unsafe { &*(name as *const str as *const Caseless) }
    }

    /// The name as it was written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Caseless {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Caseless {}

impl Hash for Caseless {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for byte in self.0.bytes() {
            state.write_u8(byte.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

/// Ordered byte by byte under the `ascii` casemapping, consistently with equality, so
/// a name can key an ordered map (the network state's persistent maps) and be
/// looked up by a borrowed [`Caseless`].
impl Ord for Caseless {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let ours = self.0.bytes().map(|byte| byte.to_ascii_lowercase());
        ours.cmp(other.0.bytes().map(|byte| byte.to_ascii_lowercase()))
    }
}

impl PartialOrd for Caseless {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Caseless {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// An owned case-insensitive name, used as a map key. It keeps the spelling it was
/// created with, so the key doubles as the display name. Hash and equality ignore
/// case, consistently with [`Caseless`] (which `Borrow` requires). Cloning is a
/// reference count increment, so a channel name can travel in every hand-off
/// without an allocation.
#[derive(Clone)]
pub struct CaselessKey(Arc<str>);

impl PartialEq for CaselessKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for CaselessKey {}

impl Hash for CaselessKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Caseless::new(&self.0).hash(state);
    }
}

impl Ord for CaselessKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        Caseless::new(&self.0).cmp(Caseless::new(&other.0))
    }
}

impl PartialOrd for CaselessKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl CaselessKey {
    /// Takes ownership of `name`, keeping its spelling.
    pub fn new(name: &str) -> CaselessKey {
        CaselessKey(name.into())
    }

    /// The name as it was first written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<Caseless> for CaselessKey {
    fn borrow(&self) -> &Caseless {
        Caseless::new(&self.0)
    }
}

impl PartialEq<Caseless> for CaselessKey {
    fn eq(&self, other: &Caseless) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Debug for CaselessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CaselessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// On the wire (events between nodes, snapshots) a key is its spelling; there is
/// nothing cached beside it to trust or recompute.
impl serde::Serialize for CaselessKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for CaselessKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Builds the key straight from the borrowed text: one allocation, no
        /// intermediate `String`.
        struct KeyVisitor;

        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = CaselessKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<CaselessKey, E> {
                Ok(CaselessKey::new(name))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn lookup_ignores_ascii_case_without_allocating_a_key() {
        let mut map = HashMap::new();
        map.insert(CaselessKey::new("#Rust"), 1);
        assert_eq!(map.get(Caseless::new("#rust")), Some(&1));
        assert_eq!(map.get(Caseless::new("#RUST")), Some(&1));
        assert_eq!(map.get(Caseless::new("#rusty")), None);
    }

    #[test]
    fn ascii_casemapping_does_not_fold_rfc1459_brackets() {
        assert!(*Caseless::new("a[b]") != *Caseless::new("a{b}"));
        assert!(*Caseless::new("Nick") == *Caseless::new("nICK"));
    }

    #[test]
    fn key_keeps_its_spelling() {
        assert_eq!(CaselessKey::new("#MixedCase").as_str(), "#MixedCase");
    }
}
