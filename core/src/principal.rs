//! From verified JWT claims to the principal a socket acts as. The shell checks signatures, audience
//! and issuer; this decides who the token names, what role it carries and whether it has expired.

use serde_json::Value;
use std::sync::Arc;

use crate::error::ConnectRefusal;
use crate::time::Millis;

/// The application role of a principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Reader,
    Consultant,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "consultant" => Some(Role::Consultant),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Consultant => "consultant",
            Role::Admin => "admin",
        }
    }

    /// Consultants and admins watch readers; readers only read.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Consultant | Role::Admin)
    }
}

/// Who a socket is: the token's subject, role, display names and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Arc<str>,
    pub role: Role,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub expires_at: Millis,
}

/// The longest user id (`sub`) accepted, as for `userId` in PROTOCOL.md.
pub const MAX_USER_ID_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 128;

/// Why claims do not make a principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimsError {
    /// `sub` or `exp` missing or malformed.
    Invalid,
    /// `exp` is not after `now`.
    Expired,
    /// No `reader`, `consultant` or `admin` role.
    NoRole,
}

impl From<ClaimsError> for ConnectRefusal {
    fn from(e: ClaimsError) -> Self {
        match e {
            ClaimsError::Invalid => ConnectRefusal::InvalidToken,
            ClaimsError::Expired => ConnectRefusal::TokenExpired,
            ClaimsError::NoRole => ConnectRefusal::InsufficientPermissions,
        }
    }
}

impl Principal {
    /// Reads a principal from a token's verified claims, as of `now`.
    pub fn from_claims(claims: &Value, now: Millis) -> Result<Principal, ClaimsError> {
        let sub = claims.get("sub").and_then(Value::as_str).ok_or(ClaimsError::Invalid)?;
        let sub_chars = sub.chars().count();
        if sub_chars == 0 || sub_chars > MAX_USER_ID_CHARS {
            return Err(ClaimsError::Invalid);
        }
        let exp = claims.get("exp").and_then(Value::as_f64).ok_or(ClaimsError::Invalid)?;
        if !exp.is_finite() || exp < 0.0 {
            return Err(ClaimsError::Invalid);
        }
        let expires_at = Millis((exp * 1000.0).min(u64::MAX as f64) as u64);
        if expires_at <= now {
            return Err(ClaimsError::Expired);
        }
        let role = role_of(claims).ok_or(ClaimsError::NoRole)?;
        let meta = claims.get("user_metadata");
        let name = |top: &str, nested: &str| {
            claims
                .get(top)
                .and_then(Value::as_str)
                .or_else(|| meta.and_then(|m| m.get(nested)).and_then(Value::as_str))
                .map(|s| s.chars().take(MAX_NAME_CHARS).collect::<String>())
        };
        Ok(Principal {
            user_id: Arc::from(sub),
            role,
            first_name: name("firstName", "first_name"),
            last_name: name("lastName", "last_name"),
            expires_at,
        })
    }
}

/// Whether `user` is a user id as a `uuid` column gives it back: hyphenated lowercase hex,
/// Supabase's form. (`Uuid` also parses the `urn:uuid:` form, which PostgreSQL refuses, and
/// braced, bare or uppercase forms, which it would give back rewritten, so that an event read
/// from the store would name another user id than the token's.)
pub fn is_uuid_user_id(user: &str) -> bool {
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::parse_str(user).is_ok_and(|id| id.hyphenated().encode_lower(&mut canonical) == user)
}

/// The first of `app_metadata.role`, `user_role`, `role` that names an application role.
fn role_of(claims: &Value) -> Option<Role> {
    let candidates =
        [claims.get("app_metadata").and_then(|m| m.get("role")), claims.get("user_role"), claims.get("role")];
    candidates.into_iter().flatten().filter_map(Value::as_str).find_map(Role::parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = Millis(1_000_000);

    #[test]
    fn supabase_role_in_app_metadata_wins_over_authenticated() {
        let claims = json!({"sub": "u1", "exp": 2000, "role": "authenticated",
            "app_metadata": {"role": "consultant"},
            "user_metadata": {"first_name": "Ada", "last_name": "L"}});
        let p = Principal::from_claims(&claims, NOW).unwrap();
        assert_eq!(p.role, Role::Consultant);
        assert_eq!(p.first_name.as_deref(), Some("Ada"));
        assert_eq!(p.last_name.as_deref(), Some("L"));
        assert_eq!(p.expires_at, Millis(2_000_000));
    }

    #[test]
    fn first_usable_role_is_taken() {
        let claims = json!({"sub": "u1", "exp": 2000, "app_metadata": {"role": "x"},
            "user_role": "reader", "role": "admin", "firstName": "Top"});
        let p = Principal::from_claims(&claims, NOW).unwrap();
        assert_eq!(p.role, Role::Reader);
        assert_eq!(p.first_name.as_deref(), Some("Top"));
    }

    #[test]
    fn missing_sub_or_exp_is_invalid_and_past_exp_is_expired() {
        assert_eq!(
            Principal::from_claims(&json!({"exp": 2000, "role": "reader"}), NOW),
            Err(ClaimsError::Invalid)
        );
        assert_eq!(
            Principal::from_claims(&json!({"sub": "u", "role": "reader"}), NOW),
            Err(ClaimsError::Invalid)
        );
        assert_eq!(
            Principal::from_claims(&json!({"sub": "u", "exp": 1000, "role": "reader"}), NOW),
            Err(ClaimsError::Expired)
        );
        assert_eq!(
            Principal::from_claims(&json!({"sub": "u", "exp": 2000, "role": "authenticated"}), NOW),
            Err(ClaimsError::NoRole)
        );
    }
}
