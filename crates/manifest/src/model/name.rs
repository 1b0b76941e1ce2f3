//! [`Name`]: the validated name of a segment, subnet, group, function, label or rule, and its
//! compact representation (short names are copied inline, long ones shared).

use std::fmt;
use std::sync::Arc;

/// A validated name: a segment, subnet, group, function, label or rule id.
///
/// Names are lowercase ASCII letters, digits and `-`, start with a letter or digit and are at
/// most 63 characters, so a function name is always a valid DNS label for `NAME.internal`.
///
/// Copied rather than shared when short: every allowed flow hands its rule's name on in its
/// decision, and a name of up to 22 characters (most are) is then a copy of a few
/// words, with no reference count to touch on another cache line. Longer names are shared.
#[derive(Clone)]
pub struct Name(NameRepr);

/// The longest name [`Name`] holds without a heap allocation.
const INLINE_NAME: usize = 22;

#[derive(Clone)]
enum NameRepr {
    /// The first `len` bytes are the name.
    Inline {
        len: u8,
        bytes: [u8; INLINE_NAME],
    },
    Shared(Arc<str>),
}

impl Name {
    /// Checks `s` against the naming rules.
    pub fn new(s: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if s.is_empty() {
            return Err("a name must not be empty".to_owned());
        }
        if s.len() > 63 {
            return Err(format!("name `{s}` is longer than 63 characters"));
        }
        if !s.chars().all(ok_char) {
            return Err(format!(
                "name `{s}` may only contain lowercase letters, digits and `-`"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(format!("name `{s}` must not start or end with `-`"));
        }
        let mut bytes = [0; INLINE_NAME];
        Ok(Self(match bytes.get_mut(..s.len()) {
            Some(fits) => {
                fits.copy_from_slice(s.as_bytes());
                NameRepr::Inline {
                    len: s.len() as u8,
                    bytes,
                }
            }
            None => NameRepr::Shared(Arc::from(s)),
        }))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always ASCII, checked by `new`, so the conversion never fails.
            NameRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            NameRepr::Shared(s) => s,
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Name").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Hashes as the text does, as [`std::borrow::Borrow`] requires.
impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}
