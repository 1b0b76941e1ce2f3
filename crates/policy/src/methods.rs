//! A rule's methods compiled for the decision: a bit per standard method, so admitting a method
//! is a mask test rather than a string comparison per listed method.

use septa_manifest::Methods;

/// The HTTP methods of RFC 9110 and RFC 5789, each with its bit.
const STANDARD: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A request's method, looked up once per decision.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MethodKey<'a> {
    /// Its bit, for a standard method spelled exactly as the standard does.
    bit: Option<u16>,
    text: &'a str,
}

impl<'a> MethodKey<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let bit = STANDARD.iter().position(|m| *m == text).map(|i| 1u16 << i);
        Self { bit, text }
    }

    /// Its bit, for a standard method spelled exactly as the standard does.
    pub(crate) fn bit(self) -> Option<u16> {
        self.bit
    }
}

/// The methods a rule admits, as [`Methods`] says, compiled.
#[derive(Clone, Debug)]
pub(crate) enum MethodSet {
    /// Every method.
    Any,
    /// The standard methods in the mask, and any other listed exactly.
    Only { standard: u16, other: Box<[String]> },
}

impl MethodSet {
    pub(crate) fn new(methods: &Methods) -> Self {
        match methods {
            Methods::Any => Self::Any,
            Methods::Only(list) => {
                let mut standard = 0;
                let mut other = Vec::new();
                for m in list {
                    match MethodKey::new(m).bit {
                        Some(bit) => standard |= bit,
                        None => other.push(m.clone()),
                    }
                }
                Self::Only {
                    standard,
                    other: other.into_boxed_slice(),
                }
            }
        }
    }

    /// The standard methods admitted, a bit each as [`MethodKey`] has them: enough to decide
    /// any standard method without the rest of the set.
    pub(crate) fn standard_mask(&self) -> u16 {
        match self {
            Self::Any => u16::MAX,
            Self::Only { standard, .. } => *standard,
        }
    }

    /// Whether it lists methods outside the standard ones.
    pub(crate) fn lists_others(&self) -> bool {
        matches!(self, Self::Only { other, .. } if !other.is_empty())
    }

    /// Whether `method` is admitted: exactly when [`Methods::admits`] says so.
    pub(crate) fn admits(&self, method: MethodKey<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::Only { standard, other } => match method.bit {
                Some(bit) => standard & bit != 0,
                None => other.iter().any(|m| m == method.text),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_exactly_what_the_listed_methods_admit() {
        let lists: [&[&str]; 5] = [
            &[],
            &["GET"],
            &["GET", "POST", "PATCH"],
            &["get", "PURGE"],
            &["TRACE", "CONNECT", "PURGE"],
        ];
        let asked = [
            "GET", "get", "POST", "PATCH", "PURGE", "purge", "TRACE", "CONNECT", "HEAD", "",
        ];
        for list in lists {
            let methods = Methods::Only(list.iter().map(|m| (*m).to_owned()).collect());
            let set = MethodSet::new(&methods);
            for method in asked {
                assert_eq!(
                    set.admits(MethodKey::new(method)),
                    methods.admits(method),
                    "{list:?} admitting {method:?}"
                );
                if let Some(bit) = MethodKey::new(method).bit() {
                    assert_eq!(
                        set.standard_mask() & bit != 0,
                        methods.admits(method),
                        "{list:?} masking {method:?}"
                    );
                }
            }
        }
        assert!(MethodSet::new(&Methods::Any).admits(MethodKey::new("ANYTHING")));
    }
}
