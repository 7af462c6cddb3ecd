-- The original project's tables, indexes and views, created only where missing, so this is
-- harmless on a Supabase database that already has them (there `user_id` is a uuid referencing
-- auth.users; here, on a fresh database, it is text, since any JWT `sub` is a user id).

CREATE TABLE IF NOT EXISTS real_time_events (
    id          UUID PRIMARY KEY,
    user_id     TEXT NOT NULL,
    event_type  VARCHAR(50) NOT NULL,
    event_data  JSONB NOT NULL,
    timestamp   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    session_id  VARCHAR(255),
    metadata    JSONB DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_realtime_events_user_id ON real_time_events (user_id);
CREATE INDEX IF NOT EXISTS idx_realtime_events_event_type ON real_time_events (event_type);
CREATE INDEX IF NOT EXISTS idx_realtime_events_timestamp ON real_time_events (timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_realtime_events_session_id ON real_time_events (session_id);
CREATE INDEX IF NOT EXISTS idx_realtime_events_user_timestamp ON real_time_events (user_id, timestamp DESC);
-- Added for get-recent-events, which pages by the time-ordered id.
CREATE INDEX IF NOT EXISTS idx_realtime_events_user_id_id ON real_time_events (user_id, id);
CREATE INDEX IF NOT EXISTS idx_realtime_events_type_id ON real_time_events (event_type, id);

CREATE TABLE IF NOT EXISTS active_sessions (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        TEXT NOT NULL,
    session_id     VARCHAR(255) UNIQUE NOT NULL,
    device_info    JSONB,
    last_activity  TIMESTAMPTZ DEFAULT NOW(),
    ip_address     INET,
    is_active      BOOLEAN DEFAULT TRUE,
    created_at     TIMESTAMPTZ DEFAULT NOW(),
    updated_at     TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_active_sessions_user_id ON active_sessions (user_id);
CREATE INDEX IF NOT EXISTS idx_active_sessions_is_active ON active_sessions (is_active);
CREATE INDEX IF NOT EXISTS idx_active_sessions_last_activity ON active_sessions (last_activity DESC);

DO $$
BEGIN
    IF to_regclass('consultant_dashboard_view') IS NULL THEN
        CREATE VIEW consultant_dashboard_view AS
        SELECT date_trunc('hour', timestamp) AS hour,
               event_type,
               COUNT(*) AS event_count,
               COUNT(DISTINCT user_id) AS unique_users
        FROM real_time_events
        WHERE timestamp >= NOW() - INTERVAL '24 hours'
        GROUP BY 1, 2
        ORDER BY hour DESC, event_count DESC;
    END IF;

    IF to_regclass('active_readers_view') IS NULL THEN
        IF to_regclass('auth.users') IS NOT NULL THEN
            -- Supabase: names come from the users' metadata.
            EXECUTE $view$
                CREATE VIEW active_readers_view AS
                SELECT s.user_id AS id,
                       u.email,
                       u.raw_user_meta_data->>'first_name' AS first_name,
                       u.raw_user_meta_data->>'last_name' AS last_name,
                       s.last_activity,
                       s.device_info,
                       s.session_id,
                       (SELECT COUNT(*) FROM real_time_events e WHERE e.user_id::text = s.user_id::text) AS total_events
                FROM active_sessions s
                LEFT JOIN auth.users u ON u.id::text = s.user_id::text
                WHERE s.is_active
            $view$;
        ELSE
            CREATE VIEW active_readers_view AS
            SELECT s.user_id AS id,
                   s.last_activity,
                   s.device_info,
                   s.session_id,
                   (SELECT COUNT(*) FROM real_time_events e WHERE e.user_id::text = s.user_id::text) AS total_events
            FROM active_sessions s
            WHERE s.is_active;
        END IF;
    END IF;
END
$$;
