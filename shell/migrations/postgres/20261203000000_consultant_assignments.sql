-- Consultant scope (PROTOCOL.md, "Consultant scope"). The Alice Suite's own table, created only
-- where it is missing, with the suite's columns; an existing table (uuid ids, references to the
-- suite's profiles and books) is left as it is and read through casts.
CREATE TABLE IF NOT EXISTS consultant_assignments (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    consultant_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    book_id       TEXT,
    active        BOOLEAN NOT NULL DEFAULT true,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_consultant_assignments_consultant ON consultant_assignments (consultant_id);
CREATE INDEX IF NOT EXISTS idx_consultant_assignments_user ON consultant_assignments (user_id);

-- Every change to the table, whoever makes it (the suite's trigger, an admin tool, this
-- server), wakes the servers that LISTEN, so they read it again at once; polling every
-- ASSIGNMENT_REFRESH_MS remains for when a notification cannot arrive (a transaction pooler, a
-- listener reconnecting). A role that may not put a trigger on the suite's table (it does not own
-- it) still migrates: the servers then poll only.
CREATE OR REPLACE FUNCTION alice_realtime_assignments_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alice_realtime_assignments', '');
    RETURN NULL;
END
$$;
DO $$
BEGIN
    DROP TRIGGER IF EXISTS alice_realtime_assignments_changed ON consultant_assignments;
    CREATE TRIGGER alice_realtime_assignments_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON consultant_assignments
        FOR EACH STATEMENT EXECUTE FUNCTION alice_realtime_assignments_changed();
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'consultant_assignments: no trigger (not its owner); servers poll it';
END
$$;
