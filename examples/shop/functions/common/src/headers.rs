//! Header names of the platform contract and a small owned header list.

use serde_json::{Map, Value};

/// Set by the host on every request a function receives: `function:NAME` for a mesh
/// call, `gateway` for ingress. Guests only read it; the host strips any they set.
pub const CALLER_HEADER: &str = "septa-caller";

/// Carried by the 403 response the host gives when policy denies a mesh call.
pub const DENY_REASON_HEADER: &str = "septa-deny-reason";

/// Headers copied out of a wasi `fields` resource, so they outlive it and can be read
/// without holding any handle.
#[derive(Debug, Clone, Default)]
pub struct HeaderList(Vec<(String, Vec<u8>)>);

impl HeaderList {
    /// Wraps the `(name, value)` pairs that `fields.entries()` returned.
    pub fn new(entries: Vec<(String, Vec<u8>)>) -> Self {
        Self(entries)
    }

    /// The value of `name` (case-insensitive), repeated values joined with `, ` as
    /// HTTP allows; bytes that are not UTF-8 are replaced rather than failing the request.
    pub fn get(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .0
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .collect();
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }

    /// Every header as a JSON object `{name: value}` with lowercase names, repeated
    /// values joined the same way as [`HeaderList::get`].
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in &self.0 {
            let name = name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(value);
            let joined = match object.get(&name).and_then(Value::as_str) {
                Some(previous) => format!("{previous}, {value}"),
                None => value.into_owned(),
            };
            object.insert(name, Value::String(joined));
        }
        Value::Object(object)
    }
}
