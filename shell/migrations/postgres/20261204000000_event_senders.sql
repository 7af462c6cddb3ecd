-- The socket each event was sent on, as a recovering client's replay needs it: its `pid` (a
-- reader's other tabs receive the event, that socket never does) and the rooms it had joined
-- (their consultants and admins receive it). Events stored before this keep none.
ALTER TABLE real_time_events
    ADD COLUMN IF NOT EXISTS sender_socket   TEXT   NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS sender_rooms TEXT[] NOT NULL DEFAULT '{}';
