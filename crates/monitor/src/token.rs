//! The admin token: where it comes from (a file, the environment, or generated at first start
//! and kept in `DIR/.septa/admin-token`), and checking a presented one in constant time.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable that can hold the admin token.
pub const TOKEN_ENV: &str = "SEPTA_ADMIN_TOKEN";

/// The file, under the application's state directory, that holds a generated token.
pub const TOKEN_FILE: &str = "admin-token";

/// Shortest token septa accepts from a file or the environment.
const MIN_TOKEN_CHARS: usize = 16;

/// Random bytes in a generated token (hex-encoded, so twice as many characters).
const GENERATED_BYTES: usize = 32;

/// The secret every admin request must present as `Authorization: Bearer TOKEN`.
#[derive(Clone)]
pub struct AdminToken {
    secret: String,
}

/// Where the token came from, so the host can say so (and print a generated one once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `--admin-token-file PATH`.
    File(PathBuf),
    /// The [`TOKEN_ENV`] environment variable.
    Environment,
    /// Generated now and written to this file.
    Generated(PathBuf),
    /// Generated at an earlier start and read back from this file.
    Reused(PathBuf),
}

/// Why the admin token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A token file could not be read.
    #[error("cannot read the admin token file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A token is too short or holds characters a header cannot carry.
    #[error("the admin token from {origin} {problem}")]
    Invalid {
        /// `` file `PATH` `` or `SEPTA_ADMIN_TOKEN`.
        origin: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A new token could not be generated or stored.
    #[error("cannot write a new admin token to `{path}`")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The system's random number generator failed.
    #[error("cannot generate an admin token: the system random number generator failed")]
    Random,
}

impl AdminToken {
    /// A token from its text (surrounding whitespace ignored), checked like one from a file.
    pub fn new(text: &str, origin: &str) -> Result<Self, TokenError> {
        let secret = text.trim();
        let invalid = |problem: String| TokenError::Invalid {
            origin: origin.to_owned(),
            problem,
        };
        if secret.chars().count() < MIN_TOKEN_CHARS {
            return Err(invalid(format!(
                "is {} characters long; use at least {MIN_TOKEN_CHARS} (or give none, and septa generates one)",
                secret.chars().count()
            )));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "holds spaces or characters other than visible ASCII, which an Authorization header cannot carry".to_owned(),
            ));
        }
        Ok(Self {
            secret: secret.to_owned(),
        })
    }

    /// The token to use: from `file` if given, else from `env` (the value of
    /// [`TOKEN_ENV`]) if set, else the one kept in `state_dir/admin-token`, generating it (32
    /// random bytes, hex, mode 0600, created atomically) if there is none yet.
    pub fn resolve(
        file: Option<&Path>,
        env: Option<&str>,
        state_dir: &Path,
    ) -> Result<(Self, TokenOrigin), TokenError> {
        if let Some(path) = file {
            let token = read_token(path)?;
            return Ok((token, TokenOrigin::File(path.to_owned())));
        }
        if let Some(text) = env {
            let token = Self::new(text, &format!("`{TOKEN_ENV}`"))?;
            return Ok((token, TokenOrigin::Environment));
        }
        let path = state_dir.join(TOKEN_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => {
                warn_if_readable_by_others(&path);
                Ok((read_token(&path)?, TokenOrigin::Reused(path)))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => generate(&path),
            Err(source) => Err(TokenError::Read { path, source }),
        }
    }

    /// The token itself, to print once or to send.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is the token. Both are hashed first and the digests compared in
    /// constant time, so neither the content nor the length of the token leaks through timing.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let expected = digest(&SHA256, self.secret.as_bytes());
        let presented = digest(&SHA256, presented);
        let mut difference = 0u8;
        for (a, b) in expected.as_ref().iter().zip(presented.as_ref()) {
            difference |= a ^ b;
        }
        std::hint::black_box(difference) == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

fn read_token(path: &Path) -> Result<AdminToken, TokenError> {
    let text = fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    AdminToken::new(&text, &format!("file `{}`", path.display()))
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the admin token file can be read by other users; `chmod 600` it"
        );
    }
}

/// Generates a token and stores it at `path` atomically: written and synced under a temporary
/// name with mode 0600, then linked into place, so no reader ever sees a partial file. If
/// another septa got there first, its token is used instead.
fn generate(path: &Path) -> Result<(AdminToken, TokenOrigin), TokenError> {
    let mut bytes = [0u8; GENERATED_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let write_error = |source| TokenError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(write_error)?;
    }
    let temporary = path.with_file_name(format!(".{TOKEN_FILE}.{}.tmp", std::process::id()));
    let written = write_new(&temporary, &secret).and_then(|()| fs::hard_link(&temporary, path));
    // The temporary name is only a way in; it goes whatever happened.
    let _ = fs::remove_file(&temporary);
    match written {
        Ok(()) => Ok((
            AdminToken { secret },
            TokenOrigin::Generated(path.to_owned()),
        )),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            Ok((read_token(path)?, TokenOrigin::Reused(path.to_owned())))
        }
        Err(error) => Err(write_error(error)),
    }
}

fn write_new(path: &Path, secret: &str) -> io::Result<()> {
    let _ = fs::remove_file(path); // a leftover of a start that crashed midway
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_generated_token_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".septa");
        let (token, origin) = AdminToken::resolve(None, None, &state).unwrap();
        let path = state.join(TOKEN_FILE);
        assert_eq!(origin, TokenOrigin::Generated(path.clone()));
        assert_eq!(token.secret().len(), 64);
        assert!(token.secret().bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(&state).unwrap().count(),
            1,
            "no temporary file left"
        );

        let (again, origin) = AdminToken::resolve(None, None, &state).unwrap();
        assert_eq!(origin, TokenOrigin::Reused(path));
        assert_eq!(again.secret(), token.secret());
    }

    #[test]
    fn a_file_wins_over_the_environment_which_wins_over_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        fs::write(&file, "  from-the-file-0123456789\n").unwrap();
        let env = Some("from-the-environment-0123");
        let (token, origin) = AdminToken::resolve(Some(&file), env, dir.path()).unwrap();
        assert_eq!(token.secret(), "from-the-file-0123456789");
        assert_eq!(origin, TokenOrigin::File(file));
        let (token, origin) = AdminToken::resolve(None, env, dir.path()).unwrap();
        assert_eq!(token.secret(), "from-the-environment-0123");
        assert_eq!(origin, TokenOrigin::Environment);
        assert!(!dir.path().join(TOKEN_FILE).exists());
    }

    #[test]
    fn short_or_unprintable_tokens_are_refused_with_their_origin() {
        let error = AdminToken::new("short", "`SEPTA_ADMIN_TOKEN`").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the admin token from `SEPTA_ADMIN_TOKEN` is 5 characters long; use at least 16 (or give none, and septa generates one)"
        );
        assert!(AdminToken::new("with a space inside it", "x").is_err());
        let missing =
            AdminToken::resolve(Some(Path::new("/nonexistent/token")), None, Path::new("/"));
        assert!(matches!(missing, Err(TokenError::Read { .. })));
    }

    #[test]
    fn only_the_exact_token_verifies() {
        let token = AdminToken::new("correct-horse-battery", "test").unwrap();
        assert!(token.verify(b"correct-horse-battery"));
        assert!(!token.verify(b"correct-horse-batterz"));
        assert!(!token.verify(b"correct-horse-battery "));
        assert!(!token.verify(b""));
    }
}
