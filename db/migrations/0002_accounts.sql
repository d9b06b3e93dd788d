-- Accounts API (issue #3): login sessions with rotating refresh tokens, one-time email tokens,
-- login throttling and a mail outbox; scheduled starts on lives.
--
-- Everything here is state that several stateless web processes must share, so it lives in
-- PostgreSQL. Secrets are never stored in clear: refresh and email tokens are stored as the
-- SHA-256 of a 256-bit random value (a slow hash adds nothing for values that cannot be guessed).

ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

ALTER TABLE lives ADD COLUMN scheduled_start timestamptz;
-- Public listings page newest first by id; "what is live now" is the hot read.
CREATE INDEX lives_status_id_idx ON lives (status, id DESC);
CREATE INDEX lives_user_id_idx ON lives (user_id, id DESC);

-- One row per login: the "family" of all the refresh tokens that rotate from it. Access tokens
-- carry the session id (claim "sid"), so revoking a session ends its access tokens at once too.
CREATE TABLE auth_sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoke_reason   text CHECK (revoke_reason IN
                        ('logout', 'logout_everywhere', 'refresh_reuse', 'password_changed',
                         'password_reset', 'deactivated')),
    user_agent      text CHECK (length(user_agent) <= 300),
    ip              text CHECK (length(ip) <= 100),
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_sessions_expires_idx ON auth_sessions (expires_at);

-- Each refresh token is good for one use: using it marks it used_at and issues its successor in
-- the same session. Presenting a used token again is a reuse: the whole session is revoked.
CREATE TABLE refresh_tokens (
    token_hash      bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id      uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- One-time tokens sent by email: verify an address, reset a password.
CREATE TABLE account_tokens (
    token_hash      bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose         text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    email           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expires_idx ON account_tokens (expires_at);

-- Failed logins per account ("user:<lower name>") and per client address ("ip:<address>") in a
-- fixed window: web processes are many and stateless, so the counters are shared here.
CREATE TABLE login_throttle (
    key             text PRIMARY KEY CHECK (length(key) <= 300),
    failures        integer NOT NULL CHECK (failures >= 0),
    window_start    timestamptz NOT NULL
);
CREATE INDEX login_throttle_window_idx ON login_throttle (window_start);

-- Mail written here instead of sent when no SMTP server is configured (local use, tests).
CREATE TABLE email_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_address      text NOT NULL CHECK (length(to_address) <= 255),
    subject         text NOT NULL CHECK (length(subject) <= 300),
    body            text NOT NULL,
    kind            text NOT NULL CHECK (length(kind) <= 50),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_outbox_to_idx ON email_outbox (lower(to_address), id DESC);
