-- Account hardening (issue #14): devices that signed in before, sessions ended by password
-- guesses, refresh retries.

-- OWASP "device cookies": a browser or client that signed in successfully to an account gets
-- a random cookie; only its SHA-256 is stored. A login that presents it is throttled on its
-- own counter, so failures of others (counted on the account's) cannot lock the owner out.
CREATE TABLE trusted_devices (
    digest          bytea PRIMARY KEY CHECK (length(digest) = 32),
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX trusted_devices_user_idx ON trusted_devices (user_id, last_used_at DESC);
CREATE INDEX trusted_devices_expires_idx ON trusted_devices (expires_at);

-- Wrong current passwords on PATCH /api/users/me end the session they came through.
ALTER TABLE auth_sessions DROP CONSTRAINT auth_sessions_revoke_reason_check;
ALTER TABLE auth_sessions ADD CONSTRAINT auth_sessions_revoke_reason_check CHECK (revoke_reason IN
    ('logout', 'logout_everywhere', 'refresh_reuse', 'password_changed', 'password_reset',
     'deactivated', 'password_guesses'));

-- A refresh token used again within a few seconds (a client retrying after a network error)
-- gets the same new pair: the pair is kept here, encrypted with a key derived from the used
-- token, which the database never holds. Cleared once the grace is over.
ALTER TABLE refresh_tokens ADD COLUMN successor bytea CHECK (length(successor) <= 8192);

-- A chat ticket dies with the login session it was issued to (logout, password change, refresh
-- reuse). Tickets live a minute: those issued before this migration are simply dropped.
DELETE FROM chat_tickets;
ALTER TABLE chat_tickets
    ADD COLUMN session_id uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE;
