//! Errors raised while reading a token.

use std::fmt;

/// What class of problem made a token unreadable. Each maps to one stable
/// reason code that callers surface to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not a well-formed compact JWS (segments, base64url, UTF-8, JSON, types).
    Malformed,
    /// Token or one of its parts exceeds a configured size limit.
    TooLarge,
    /// The `alg` is not one this crate implements (including every `none`).
    AlgNotAllowed,
    /// The header lists `crit` extensions or uses `b64:false`.
    CritUnsupported,
}

impl ErrorKind {
    /// Stable reason code, as documented in the README.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::AlgNotAllowed => "alg-not-allowed",
            ErrorKind::CritUnsupported => "crit-unsupported",
        }
    }
}

/// A token could not be read. The message is safe to show to an operator; it
/// never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The class of problem.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Malformed, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for Error {}
