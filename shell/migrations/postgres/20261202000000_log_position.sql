-- Every event's position in the deployment's log (a Redis stream id `log_ms-log_seq` in a
-- cluster; on a single node, placed the same way by the node), so that `since` cursors follow the
-- log's order exactly, whatever the nodes' clocks said when they made the ids.
ALTER TABLE real_time_events
    ADD COLUMN IF NOT EXISTS log_ms  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS log_seq BIGINT NOT NULL DEFAULT 0;

-- Events stored before positions existed: each at its time (the original schema allows a NULL
-- timestamp: then its creation time, or now), then in the order of its id.
UPDATE real_time_events e
SET log_ms = floor(extract(epoch FROM COALESCE(e.timestamp, e.created_at, now())) * 1000)::int8, log_seq = o.n
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
      FROM real_time_events WHERE log_ms = 0 AND log_seq = 0) o
WHERE e.id = o.id;

CREATE INDEX IF NOT EXISTS idx_realtime_events_position ON real_time_events (log_ms, log_seq);
CREATE INDEX IF NOT EXISTS idx_realtime_events_user_position ON real_time_events (user_id, log_ms, log_seq);
-- Paging by id is gone: positions replace these.
DROP INDEX IF EXISTS idx_realtime_events_user_id_id;
DROP INDEX IF EXISTS idx_realtime_events_type_id;
