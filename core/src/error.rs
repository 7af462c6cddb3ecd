//! Every way the core says no, as types with codes. Their wire text is written here and nowhere
//! else, so a message never carries internal detail.

use std::fmt;

/// The `code` of an `event-error` or a failed acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    InvalidPayload,
    PayloadTooLarge,
    UnknownEvent,
    RateLimited,
    Unavailable,
    TokenExpired,
    Internal,
}

impl ErrorCode {
    /// Every code, for metrics that list them all.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidPayload,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnknownEvent,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::TokenExpired,
        ErrorCode::Internal,
    ];

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::InvalidPayload => "INVALID_PAYLOAD",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnknownEvent => "UNKNOWN_EVENT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused client event: what went wrong, in words a client may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
    /// Set with [`ErrorCode::RateLimited`]: when a token will be available again.
    pub retry_after_ms: Option<u64>,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CommandError { code, message: message.into(), retry_after_ms: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        CommandError::new(ErrorCode::InvalidPayload, message)
    }

    pub fn rate_limited(retry_after_ms: u64) -> Self {
        CommandError {
            code: ErrorCode::RateLimited,
            message: "Rate limit exceeded".to_owned(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    pub fn unavailable() -> Self {
        CommandError::new(ErrorCode::Unavailable, "Event queue is full, event not accepted")
    }

    pub fn token_expired() -> Self {
        CommandError::new(ErrorCode::TokenExpired, "Authentication token expired")
    }

    pub fn internal() -> Self {
        CommandError::new(ErrorCode::Internal, "Internal server error")
    }
}

/// Why a connection was refused; its `Display` is the exact `connect_error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectRefusal {
    TokenRequired,
    InvalidToken,
    TokenExpired,
    InsufficientPermissions,
    RateLimited,
    ServerBusy,
}

impl ConnectRefusal {
    /// Whether the refusal is of the token itself (missing, invalid, expired or of no role),
    /// rather than of the moment (a handshake rate or a connection cap).
    pub fn refuses_token(self) -> bool {
        !matches!(self, ConnectRefusal::RateLimited | ConnectRefusal::ServerBusy)
    }

    pub fn message(self) -> &'static str {
        match self {
            ConnectRefusal::TokenRequired => "Authentication token required",
            ConnectRefusal::InvalidToken => "Invalid authentication token",
            ConnectRefusal::TokenExpired => "Authentication token expired",
            ConnectRefusal::InsufficientPermissions => "Insufficient permissions",
            ConnectRefusal::RateLimited => "Rate limit exceeded",
            ConnectRefusal::ServerBusy => "Server busy",
        }
    }
}

impl fmt::Display for ConnectRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}
