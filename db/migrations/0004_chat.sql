-- Live chat: single-use connection tickets, moderators, sanctions (mute/ban), slow mode, the
-- moderation record, per-process viewer reports and a live's peak viewer count.

ALTER TABLE lives ADD COLUMN peak_viewer_count bigint NOT NULL DEFAULT 0
    CHECK (peak_viewer_count >= 0);
-- 0: off; otherwise the seconds a viewer waits between two messages in this room.
ALTER TABLE lives ADD COLUMN chat_slow_mode_s integer NOT NULL DEFAULT 0
    CHECK (chat_slow_mode_s BETWEEN 0 AND 3600);

-- A ticket lets a signed-in browser open the WebSocket without a token in the URL: only the
-- SHA-256 of the ticket is stored, and using it deletes it (single use).
CREATE TABLE chat_tickets (
    digest      bytea PRIMARY KEY CHECK (length(digest) = 32),
    live_id     bigint NOT NULL REFERENCES lives (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX chat_tickets_expires_idx ON chat_tickets (expires_at);

CREATE TABLE chat_moderators (
    live_id     bigint NOT NULL REFERENCES lives (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (live_id, user_id)
);

-- The latest mute or ban of a user in a room; an expired row means nothing.
CREATE TABLE chat_sanctions (
    live_id     bigint NOT NULL REFERENCES lives (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('mute', 'ban')),
    until       timestamptz NOT NULL,
    created_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (live_id, user_id, kind)
);

-- Every moderation action, kept: who did what to whom (or to which message), when.
CREATE TABLE chat_moderation_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    live_id         bigint NOT NULL REFERENCES lives (id) ON DELETE CASCADE,
    actor_id        bigint REFERENCES users (id) ON DELETE SET NULL,
    action          text NOT NULL CHECK (action IN ('delete', 'mute', 'ban', 'unmute', 'unban',
                                                    'slow_mode', 'add_moderator',
                                                    'remove_moderator')),
    target_user_id  bigint REFERENCES users (id) ON DELETE SET NULL,
    message_id      bigint REFERENCES chat_messages (id) ON DELETE SET NULL,
    duration_s      integer CHECK (duration_s >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_moderation_log_live_idx ON chat_moderation_log (live_id, id);

-- Each serving process reports its viewers per live; rows not refreshed within two report
-- intervals are ignored (a killed process's viewers drop out) and then deleted.
CREATE UNLOGGED TABLE chat_viewer_reports (
    process_id  uuid NOT NULL,
    live_id     bigint NOT NULL REFERENCES lives (id) ON DELETE CASCADE,
    viewers     integer NOT NULL CHECK (viewers >= 0),
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (process_id, live_id)
);
CREATE INDEX chat_viewer_reports_live_idx ON chat_viewer_reports (live_id);

-- Room settings changed by any code path (the lives API, SQL by hand) reach every process.
CREATE FUNCTION chat_notify_room() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat', json_build_array(json_build_object(
        't', 'room', 'live_id', NEW.id, 'chat_enabled', NEW.chat_enabled,
        'slow_mode_s', NEW.chat_slow_mode_s))::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER lives_chat_room AFTER UPDATE OF chat_enabled, chat_slow_mode_s ON lives
    FOR EACH ROW
    WHEN (OLD.chat_enabled IS DISTINCT FROM NEW.chat_enabled
          OR OLD.chat_slow_mode_s IS DISTINCT FROM NEW.chat_slow_mode_s)
    EXECUTE FUNCTION chat_notify_room();
