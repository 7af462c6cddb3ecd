//! A socket's life: admission (token, role, handshake rate, connection caps), token refresh and
//! expiry, and leaving. Presence changes for reader sockets are announced on the bus here.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{CommandError, ConnectRefusal, ErrorCode};
use crate::principal::{ClaimsError, Principal};
use crate::rate_limit::TokenBucket;
use crate::recovery::{Check, Recovered};
use crate::replies::{self, names};
use crate::timers::Timer;
use crate::{AckId, BusBody, ConnId, Connection, Core, Millis, Output, TokenCheck, UserLimits};

/// How often idle users' rate limit state is forgotten.
const FORGET_IDLE_USERS_MS: u64 = 60_000;

impl Core {
    pub(crate) fn on_connect(
        &mut self,
        now: Millis,
        conn: ConnId,
        sid: String,
        token: TokenCheck,
        recovery: Option<crate::Recovery>,
    ) {
        match self.admit(now, conn, &token) {
            Ok(principal) => self.open(conn, sid, principal, recovery),
            Err(reason) => {
                self.stats.connects_refused += 1;
                // A session outlives a refusal of the moment: the client's next try recovers it.
                if reason.refuses_token() {
                    self.refused_recovery(recovery);
                }
                self.outputs.push_back(Output::Refuse { conn, reason });
            }
        }
    }

    fn admit(&mut self, now: Millis, conn: ConnId, token: &TokenCheck) -> Result<Principal, ConnectRefusal> {
        let claims = match token {
            TokenCheck::Missing => return Err(ConnectRefusal::TokenRequired),
            TokenCheck::Invalid => return Err(ConnectRefusal::InvalidToken),
            TokenCheck::Verified(claims) => claims,
        };
        if self.conns.contains_key(&conn) || self.recovering.contains_key(&conn) {
            return Err(ConnectRefusal::InvalidToken);
        }
        let principal = Principal::from_claims(claims, self.wall)?;
        let config = &self.config;
        // Only a reader's id is stored with events; a reader the store could not name is refused
        // here rather than acknowledged and dead-lettered.
        if principal.role == crate::Role::Reader && !config.store_holds_user_id(&principal.user_id) {
            return Err(ConnectRefusal::InvalidToken);
        }
        let limits = self.users.entry(principal.user_id.clone()).or_insert_with(|| UserLimits {
            reader_events: TokenBucket::new(config.reader_event_rate, 1000, config.reader_event_burst, now),
            other_events: TokenBucket::new(config.other_event_rate, 1000, config.other_event_burst, now),
            handshakes: TokenBucket::new(
                config.handshakes_per_minute,
                60_000,
                config.handshakes_per_minute,
                now,
            ),
            connections: 0,
        });
        limits.handshakes.take(now).map_err(|_| ConnectRefusal::RateLimited)?;
        if limits.connections >= config.max_connections_per_user
            || self.conns.len() + self.recovering.len() >= config.max_connections as usize
        {
            return Err(ConnectRefusal::ServerBusy);
        }
        limits.connections += 1;
        Ok(principal)
    }

    fn open(&mut self, conn: ConnId, sid: String, principal: Principal, recovery: Option<crate::Recovery>) {
        match recovery.map(|r| self.check(&principal, r)) {
            Some(Check::AskStore(recovered, filter)) => {
                self.ask_store(conn, sid, principal, recovered, filter)
            }
            Some(Check::Recover(recovered)) => self.accept(conn, sid, principal, Some(recovered)),
            Some(Check::Fresh) | None => self.accept(conn, sid, principal, None),
        }
    }

    pub(crate) fn accept(
        &mut self,
        conn: ConnId,
        sid: String,
        principal: Principal,
        recovered: Option<Recovered>,
    ) {
        let pid = self.give_pid(conn, recovered.as_ref());
        let scoped_to = crate::scope::scoped_consultant(self.config.consultant_scope, &principal);
        self.routing.add_socket(conn, &principal.user_id, principal.role.is_staff(), scoped_to);
        self.timers.set(Timer::TokenExpiry(conn), self.mono_at(principal.expires_at));
        if principal.role == crate::Role::Reader {
            let reader = self
                .presence
                .connect(&principal.user_id, &principal.first_name, &principal.last_name, self.wall)
                .clone();
            self.publish(BusBody::Presence { user_id: principal.user_id.to_string(), reader: Some(reader) });
        }
        let staff = principal.role.is_staff();
        let connected_at = self.frontier();
        let sent = staff.then(|| Box::new(crate::resume::Sent::new(connected_at)));
        if staff && recovered.is_none() {
            // A recovered socket's replay comes first by itself; a new one's deliveries wait.
            self.first.insert(conn, Vec::new());
            self.timers.set(Timer::FirstCommand(conn), self.now.plus(crate::resume::FIRST_COMMAND_WAIT_MS));
        }
        let c = Connection {
            principal,
            sid,
            rooms: BTreeSet::new(),
            subscription: None,
            tag: crate::event::socket_tag(&pid),
            pid: pid.into(),
            connected_at,
            sent,
        };
        self.conns.insert(conn, c);
        self.outputs.push_back(Output::Accept { conn });
        match recovered {
            Some(r) => self.restore(conn, r),
            // Saved at once, so that it can be recovered even if this node dies before it leaves.
            None => self.save_session(conn),
        }
    }

    pub(crate) fn on_disconnect(&mut self, conn: ConnId) {
        if self.abandon_recovery(conn) {
            return;
        }
        // Kept for recovery from now on.
        self.save_session(conn);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.resuming.remove(&conn);
        self.seen_up_to.remove(&conn);
        self.first.remove(&conn);
        self.timers.cancel(Timer::FirstCommand(conn));
        self.timers.cancel(Timer::LogEnd(conn));
        let user = &c.principal.user_id;
        self.routing.remove_socket(conn, user);
        for room in &c.rooms {
            self.routing.leave_room(conn, room);
        }
        if let Some(sub) = &c.subscription {
            self.routing.set_subscription(conn, Some(&sub.event_types), None);
        }
        self.subscribed.remove(&conn);
        self.shown_views.remove(&conn);
        self.refreshing.remove(&conn);
        self.timers.cancel(Timer::TokenExpiry(conn));
        if let Some(limits) = self.users.get_mut(user) {
            limits.connections = limits.connections.saturating_sub(1);
        }
        if c.principal.role == crate::Role::Reader {
            let reader = self.presence.disconnect(user).cloned();
            self.publish(BusBody::Presence { user_id: user.to_string(), reader });
        }
    }

    /// A socket's token ran out before it was refreshed: tell it, then close it. When a refresh
    /// it sent is still being verified, the verdict decides instead.
    pub(crate) fn expire_token(&mut self, conn: ConnId) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        if let Some(expired) = self.refreshing.get_mut(&conn) {
            *expired = true;
            return;
        }
        self.refuse(conn, None, None, CommandError::token_expired());
        self.on_disconnect(conn);
        self.outputs.push_back(Output::Disconnect { conn });
    }

    pub(crate) fn on_token_verified(&mut self, conn: ConnId, ack: Option<AckId>, token: TokenCheck) {
        let Some(current) = self.conns.get(&conn).map(|c| (c.principal.user_id.clone(), c.principal.role))
        else {
            return;
        };
        let expired_meanwhile = self.refreshing.remove(&conn).unwrap_or(false);
        match self.refreshed_principal(&current, token) {
            Ok(principal) => {
                let expires_at = principal.expires_at;
                self.timers.set(Timer::TokenExpiry(conn), self.mono_at(expires_at));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.principal = principal;
                }
                self.reply(conn, ack, names::TOKEN_REFRESHED, replies::token_refreshed(expires_at));
            }
            Err(err) => {
                self.refund(conn, crate::protocol::ClientEvent::RefreshToken);
                self.refuse(conn, ack, Some(crate::protocol::ClientEvent::RefreshToken.name()), err);
                if expired_meanwhile {
                    self.expire_token(conn);
                }
            }
        }
    }

    /// The principal a refresh token names, if it may replace the socket's current one.
    fn refreshed_principal(
        &self,
        current: &(Arc<str>, crate::Role),
        token: TokenCheck,
    ) -> Result<Principal, CommandError> {
        let invalid = || CommandError::invalid("Invalid authentication token");
        let TokenCheck::Verified(claims) = token else { return Err(invalid()) };
        let principal = match Principal::from_claims(&claims, self.wall) {
            Ok(p) => p,
            Err(ClaimsError::Invalid) => return Err(invalid()),
            Err(ClaimsError::Expired) => return Err(CommandError::token_expired()),
            Err(ClaimsError::NoRole) => return Err(forbidden("Token carries no usable role")),
        };
        if principal.user_id != current.0 || principal.role != current.1 {
            return Err(forbidden("Token belongs to another user or role"));
        }
        Ok(principal)
    }

    /// Drops rate limit state of users with no socket whose buckets have refilled: forgetting
    /// them changes no decision, and keeps memory bounded by the users actually present.
    pub(crate) fn forget_idle_users(&mut self, now: Millis) {
        let mut idle: Vec<Arc<str>> = Vec::new();
        for (user, l) in self.users.iter_mut() {
            if l.connections == 0
                && l.handshakes.is_full(now)
                && l.reader_events.is_full(now)
                && l.other_events.is_full(now)
            {
                idle.push(user.clone());
            }
        }
        for user in idle {
            self.users.remove(&user);
        }
        self.timers.set(Timer::ForgetIdleUsers, now.plus(FORGET_IDLE_USERS_MS));
    }
}

pub(crate) fn forbidden(message: &str) -> CommandError {
    CommandError::new(ErrorCode::Forbidden, message)
}
