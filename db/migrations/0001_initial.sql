-- The schema of the original design, made correct: timestamptz everywhere, CHECK constraints on
-- status columns, deletes that cannot silently take history with them, updated_at by trigger.
--
-- ON DELETE policy: rows that are money or someone's work (videos, lives, payments) RESTRICT the
-- deletion of their user: accounts are deactivated (users.is_active), not deleted. Parts of a row
-- go with it (video_qualities with their video, chat with its live). Authorship of a chat
-- message survives a user's deletion as NULL so the room's history stays readable.

-- Extensions are optional: created when the server has them and we may create them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gin') THEN
        CREATE EXTENSION IF NOT EXISTS btree_gin;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_trgm/btree_gin not created (insufficient privilege); fuzzy search disabled';
END
$$;

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.-]{3,50}$'),
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 255 AND email LIKE '%_@_%'),
    password_hash   text NOT NULL,
    avatar          text CHECK (length(avatar) <= 500),
    bio             text CHECK (length(bio) <= 2000),
    role            text NOT NULL DEFAULT 'viewer' CHECK (role IN ('viewer', 'creator', 'admin')),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Case-insensitive uniqueness: "Alice" and "alice" are one account name, as are emails.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE lives (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
    description     text CHECK (length(description) <= 5000),
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    status          text NOT NULL DEFAULT 'offline'
                    CHECK (status IN ('offline', 'scheduled', 'live', 'ended')),
    start_time      timestamptz,
    end_time        timestamptz,
    stream_key      text NOT NULL UNIQUE CHECK (length(stream_key) BETWEEN 16 AND 100),
    viewer_count    bigint NOT NULL DEFAULT 0 CHECK (viewer_count >= 0),
    chat_enabled    boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time IS NULL OR start_time IS NULL OR end_time >= start_time)
);
CREATE INDEX lives_user_status_idx ON lives (user_id, status);
CREATE INDEX lives_active_idx ON lives (status, start_time) WHERE status IN ('live', 'scheduled');
CREATE TRIGGER lives_updated_at BEFORE UPDATE ON lives
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE chat_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    live_id         bigint NOT NULL REFERENCES lives (id) ON DELETE CASCADE,
    user_id         bigint REFERENCES users (id) ON DELETE SET NULL,
    content         text NOT NULL CHECK (length(content) BETWEEN 1 AND 500),
    deleted_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- "the last N messages of a room" and "what did I miss since id X" are the hot reads.
CREATE INDEX chat_messages_live_id_idx ON chat_messages (live_id, id);
CREATE INDEX chat_messages_user_idx ON chat_messages (user_id);

CREATE TABLE videos (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title               text NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
    description         text CHECK (length(description) <= 5000),
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    -- A recording of a live has no uploaded original: original_url may be NULL.
    original_url        text CHECK (length(original_url) <= 1000),
    original_key        text CHECK (length(original_key) <= 1000),
    thumbnail_url       text CHECK (length(thumbnail_url) <= 1000),
    hls_master_url      text CHECK (length(hls_master_url) <= 1000),
    hls_key             text CHECK (length(hls_key) <= 1000),
    duration            double precision NOT NULL DEFAULT 0 CHECK (duration >= 0),
    file_size           bigint NOT NULL DEFAULT 0 CHECK (file_size >= 0),
    original_format     text CHECK (length(original_format) <= 20),
    status              text NOT NULL DEFAULT 'uploading'
                        CHECK (status IN ('uploading', 'uploaded', 'processing', 'ready', 'failed')),
    processing_progress smallint NOT NULL DEFAULT 0
                        CHECK (processing_progress BETWEEN 0 AND 100),
    error_message       text CHECK (length(error_message) <= 2000),
    views               bigint NOT NULL DEFAULT 0 CHECK (views >= 0),
    likes               bigint NOT NULL DEFAULT 0 CHECK (likes >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'ready' OR hls_master_url IS NOT NULL),
    CHECK (status <> 'failed' OR error_message IS NOT NULL)
);
CREATE INDEX videos_user_status_idx ON videos (user_id, status);
CREATE INDEX videos_status_created_idx ON videos (status, created_at);
CREATE INDEX videos_user_created_idx ON videos (user_id, created_at DESC);
CREATE INDEX videos_fulltext_idx ON videos
    USING gin (to_tsvector('english'::regconfig, title || ' ' || coalesce(description, '')));
CREATE TRIGGER videos_updated_at BEFORE UPDATE ON videos
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Fuzzy title search, only where pg_trgm exists.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX videos_title_trgm_idx ON videos USING gin (title gin_trgm_ops);
    END IF;
END
$$;

CREATE TABLE video_qualities (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    video_id        bigint NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (name ~ '^[a-z0-9_]{1,32}$'),
    width           integer NOT NULL CHECK (width > 0),
    height          integer NOT NULL CHECK (height > 0),
    bitrate         integer NOT NULL CHECK (bitrate > 0),
    codecs          text CHECK (length(codecs) <= 200),
    playlist_url    text NOT NULL CHECK (length(playlist_url) <= 1000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (video_id, name)
);

CREATE TABLE payments (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    video_id            bigint REFERENCES videos (id) ON DELETE RESTRICT,
    live_id             bigint REFERENCES lives (id) ON DELETE RESTRICT,
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded',
                                          'partially_refunded', 'canceled')),
    refunded_cents      bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    provider            text NOT NULL CHECK (provider IN ('sandbox', 'stripe')),
    provider_payment_id text,
    idempotency_key     text UNIQUE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded_cents <= amount_cents),
    UNIQUE (provider, provider_payment_id)
);
CREATE INDEX payments_user_created_idx ON payments (user_id, created_at DESC);
CREATE INDEX payments_video_idx ON payments (video_id) WHERE video_id IS NOT NULL;
CREATE INDEX payments_live_idx ON payments (live_id) WHERE live_id IS NOT NULL;
CREATE TRIGGER payments_updated_at BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Cache: UNLOGGED because its contents can always be recomputed. Writes skip the WAL (cheaper,
-- and not shipped to replicas, which cannot read unlogged tables: cache reads go to the primary);
-- after a crash PostgreSQL empties it, which for a cache is only a cold start.
-- Expiry is enforced on read (expires_at > now()) and by a periodic batched clean-up in db/cache.py,
-- not by a trigger that scans the table on every write as the original did.
CREATE UNLOGGED TABLE cache_data (
    key         text PRIMARY KEY CHECK (length(key) <= 255),
    value       jsonb NOT NULL,
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cache_data_expires_idx ON cache_data (expires_at) WHERE expires_at IS NOT NULL;
CREATE TRIGGER cache_data_updated_at BEFORE UPDATE ON cache_data
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
