//! `[api_keys.NAME]` sets: the SHA-256 of each key, or the file the keys are read from at start.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::Loader;
use crate::model::*;
use crate::raw::*;

impl Loader {
    pub(super) fn api_key_sets(
        &mut self,
        dir: &std::path::Path,
        raw: &[(Spanned<String>, RawApiKeys)],
    ) -> BTreeMap<Name, ApiKeySet> {
        let mut out = BTreeMap::new();
        for (name, set) in raw {
            let Some(n) = self.name(name) else { continue };
            let mut keys = Vec::new();
            for k in &set.keys {
                match ApiKey::parse_sha256(k.sha256.get_ref()) {
                    Some(sha256) => keys.push(ApiKey {
                        consumer: k.consumer.clone(),
                        sha256,
                    }),
                    None => self.error_help(
                        &k.sha256.span(),
                        "`sha256` must be 64 hex digits",
                        "store the SHA-256 of the key, never the key: `printf %s KEY | sha256sum`",
                    ),
                }
            }
            if set.keys.is_empty() && set.keys_file.is_none() {
                self.error(
                    &name.span(),
                    format!("`api_keys.{n}` has no `keys` and no `keys_file`"),
                );
            }
            out.insert(
                n.clone(),
                ApiKeySet {
                    name: n,
                    keys,
                    keys_file: set.keys_file.as_ref().map(|f| dir.join(f)),
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }
}
