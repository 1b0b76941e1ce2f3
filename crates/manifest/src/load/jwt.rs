//! `[jwt.NAME]` issuers: accepted algorithms, audiences, leeway, and where the keys come from
//! (a file, or an `https://` URL with its refresh interval and trusted roots).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::Loader;
use crate::https_url::HttpsUrl;
use crate::model::*;
use crate::raw::RawJwt;

impl Loader {
    pub(super) fn jwt_issuers(
        &mut self,
        dir: &Path,
        raw: &[(Spanned<String>, RawJwt)],
    ) -> BTreeMap<Name, JwtIssuer> {
        let mut out = BTreeMap::new();
        for (name, j) in raw {
            let Some(n) = self.name(name) else { continue };
            let jwks = self.jwks_source(dir, &n, name, j);
            let mut algorithms = Vec::new();
            for a in &j.algorithms {
                match a.get_ref().as_str() {
                    "RS256" => algorithms.push(JwtAlgorithm::Rs256),
                    "ES256" => algorithms.push(JwtAlgorithm::Es256),
                    "EdDSA" => algorithms.push(JwtAlgorithm::EdDsa),
                    other => self.error_help(
                        &a.span(),
                        format!("JWT algorithm `{other}` is not accepted"),
                        "septa accepts `RS256`, `ES256` and `EdDSA`; never `none`, never HMAC",
                    ),
                }
            }
            if j.algorithms.is_empty() {
                self.error(
                    &name.span(),
                    format!("`jwt.{n}` must list its `algorithms`"),
                );
            }
            if j.audiences.is_empty() {
                self.error(
                    &name.span(),
                    format!("`jwt.{n}` must list at least one audience"),
                );
            }
            let leeway_s = match &j.leeway_s {
                Some(l) if *l.get_ref() > 300 => {
                    self.error(&l.span(), "`leeway_s` must be at most 300");
                    30
                }
                Some(l) => *l.get_ref(),
                None => 30,
            };
            out.insert(
                n.clone(),
                JwtIssuer {
                    name: n,
                    issuer: j.issuer.clone(),
                    audiences: j.audiences.clone(),
                    algorithms,
                    jwks,
                    leeway_s,
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    /// `jwks_file`, or `jwks_url` with its `jwks_refresh_s` and `ca_file`: exactly one source.
    /// With errors the placeholder returned is never used, since the manifest is refused.
    fn jwks_source(
        &mut self,
        dir: &Path,
        n: &Name,
        name: &Spanned<String>,
        j: &RawJwt,
    ) -> JwksSource {
        let placeholder = JwksSource::File(PathBuf::new());
        match (&j.jwks_url, &j.jwks_file) {
            (Some(url), None) => self.jwks_url(dir, url, j).unwrap_or(placeholder),
            (None, Some(file)) => self.jwks_file(dir, n, file, j),
            (Some(url), Some(_)) => {
                self.error_help(
                    &url.span(),
                    format!("`jwt.{n}` has both `jwks_file` and `jwks_url`"),
                    "keep one: a file read at start-up, or an `https://` URL fetched and refreshed",
                );
                placeholder
            }
            (None, None) => {
                self.error_help(
                    &name.span(),
                    format!("`jwt.{n}` needs its keys: `jwks_file` or `jwks_url`"),
                    "`jwks_file = \"keys/jwks.json\"` or `jwks_url = \"https://auth.example/.well-known/jwks.json\"`",
                );
                placeholder
            }
        }
    }

    /// `jwks_file`, read once at start-up: the fields of a URL source do not apply.
    fn jwks_file(
        &mut self,
        dir: &Path,
        n: &Name,
        file: &Spanned<String>,
        j: &RawJwt,
    ) -> JwksSource {
        for (key, span) in [
            (
                "jwks_refresh_s",
                j.jwks_refresh_s.as_ref().map(Spanned::span),
            ),
            ("ca_file", j.ca_file.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                self.error_help(
                    &span,
                    format!("`{key}` applies only to `jwks_url`"),
                    format!("`jwt.{n}` reads its keys from `jwks_file`, once at start-up"),
                );
            }
        }
        JwksSource::File(dir.join(file.get_ref()))
    }

    /// `jwks_url`: an `https://` URL, refreshed every `jwks_refresh_s` (300 unless given).
    fn jwks_url(&mut self, dir: &Path, url: &Spanned<String>, j: &RawJwt) -> Option<JwksSource> {
        let refresh_s = match &j.jwks_refresh_s {
            Some(r) if !(10..=86_400).contains(r.get_ref()) => {
                self.error_help(
                    &r.span(),
                    format!(
                        "`jwks_refresh_s` must be between 10 and 86400 seconds, not {}",
                        r.get_ref()
                    ),
                    "the default is 300; a token naming an unknown `kid` also refreshes early",
                );
                return None;
            }
            Some(r) => *r.get_ref(),
            None => 300,
        };
        match HttpsUrl::parse(url.get_ref()) {
            Ok(parsed) => Some(JwksSource::Url {
                url: parsed,
                refresh_s,
                ca_file: j.ca_file.as_ref().map(|f| dir.join(f.get_ref())),
            }),
            Err(e) => {
                self.error_help(
                    &url.span(),
                    format!("`jwks_url`: {e}"),
                    "keys are fetched over `https` only, from `https://HOST[:PORT]/PATH`",
                );
                None
            }
        }
    }
}
