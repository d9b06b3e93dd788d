-- VOD uploads and transcoding (issue #17): uploads shaped like S3 multipart, the state a
-- transcoding job leaves on its video, likes, counted views. The job queue itself is
-- pgqueuer's schema, installed by db/migrate.py after these files.

ALTER TABLE videos
    ADD COLUMN visibility text NOT NULL DEFAULT 'public'
        CHECK (visibility IN ('public', 'unlisted', 'private')),
    -- What the worker is doing and when it expects to be done (progress is processing_progress).
    ADD COLUMN processing_stage text CHECK (length(processing_stage) <= 40),
    ADD COLUMN eta_seconds integer CHECK (eta_seconds >= 0),
    -- Storage keys of what the transcoder wrote: `output_prefix` holds every object of the
    -- ready output set (deleted with the video); the poster and storyboard lie under it.
    ADD COLUMN output_prefix text CHECK (length(output_prefix) <= 500),
    ADD COLUMN thumbnail_key text CHECK (length(thumbnail_key) <= 1000),
    ADD COLUMN storyboard_key text CHECK (length(storyboard_key) <= 1000),
    -- The transcoding run that may publish its output: a job attempt writes under a prefix of
    -- its own and only the attempt whose token is still here when it finishes wins, so a
    -- worker presumed dead that wakes up late can never mix its files into the output.
    ADD COLUMN run_token text CHECK (length(run_token) <= 64),
    -- Attempts started, counted by the handler itself: a file that kills its worker (a crash,
    -- the OOM killer) is re-picked after the lease expires; this stops it after N tries.
    ADD COLUMN job_attempts integer NOT NULL DEFAULT 0 CHECK (job_attempts >= 0),
    ADD COLUMN job_id bigint,
    ADD COLUMN processing_started_at timestamptz;

-- "My videos" and the public lists by popularity.
CREATE INDEX videos_public_views_idx ON videos (views DESC, id DESC)
    WHERE status = 'ready' AND visibility = 'public';
-- Search: ranked full text in the 'simple' configuration (no stemming: titles mix English
-- and Chinese), with substring and trigram matches beside it (web/videos.py explains).
CREATE INDEX videos_simple_fulltext_idx ON videos
    USING gin (to_tsvector('simple'::regconfig, title || ' ' || coalesce(description, '')));

CREATE TABLE video_uploads (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{16,64}$'),
    video_id        bigint NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename        text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type    text NOT NULL CHECK (length(content_type) <= 100),
    size            bigint NOT NULL CHECK (size > 0),
    part_size       integer NOT NULL CHECK (part_size > 0),
    part_count      integer NOT NULL CHECK (part_count BETWEEN 1 AND 10000),
    -- Where the parts go: 'local' (streamd stores them under uploads/{id}/) or 's3' (a
    -- multipart upload of object_key, s3_upload_id, straight from the browser).
    storage         text NOT NULL CHECK (storage IN ('local', 's3')),
    object_key      text NOT NULL CHECK (length(object_key) <= 500),
    s3_upload_id    text CHECK (length(s3_upload_id) <= 1000),
    status          text NOT NULL DEFAULT 'uploading'
                    CHECK (status IN ('uploading', 'completing', 'completed', 'aborted', 'expired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX video_uploads_user_idx ON video_uploads (user_id, created_at DESC)
    WHERE status IN ('uploading', 'completing');
CREATE INDEX video_uploads_expiry_idx ON video_uploads (expires_at)
    WHERE status IN ('uploading', 'completing');

-- Parts received on local storage (S3 keeps its own list, read with ListParts).
CREATE TABLE video_upload_parts (
    upload_id   text NOT NULL REFERENCES video_uploads (id) ON DELETE CASCADE,
    number      integer NOT NULL CHECK (number BETWEEN 1 AND 10000),
    size        bigint NOT NULL CHECK (size > 0),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_id, number)
);

CREATE TABLE video_likes (
    video_id    bigint NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (video_id, user_id)
);
CREATE INDEX video_likes_user_idx ON video_likes (user_id);

-- One row per viewer and video: a view counts again only once the window has passed.
-- `viewer` is "u:{user id}" or "a:{server-issued anonymous id}".
CREATE TABLE video_views (
    video_id    bigint NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    viewer      text NOT NULL CHECK (length(viewer) <= 80),
    counted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (video_id, viewer)
);
