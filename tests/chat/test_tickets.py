"""A chat ticket dies with the login session it was issued to."""

from __future__ import annotations

from db import auth as auth_db
from tests.chat.chat_helpers import ChatServer, User, open_chat
from web.authn import new_secret_token


async def _second_session(server: ChatServer, user: User) -> User:
    """Another login of the same user (its own session and access token)."""
    _, digest = new_secret_token()
    session = await auth_db.create_session(
        server.pool, user_id=user.id, token_hash=digest, ttl=3600, user_agent=None, ip=None
    )
    access = server.app.state.keys.issue(user_id=user.id, session_id=session, role=user.role)
    return User(user.id, user.username, user.role, access)


async def test_a_ticket_dies_with_its_session(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    other_login = await _second_session(server, owner)
    ticket = await server.ticket(owner, live)
    kept = await server.ticket(other_login, live)
    async with server.http() as client:
        assert (await client.post("/api/auth/logout", headers=owner.auth)).status_code == 204
    refused = await open_chat(server.base_url, live, ticket)
    assert refused.welcome["type"] == "error" and refused.welcome["code"] == "invalid_ticket"
    await refused.ws.wait_closed()
    assert refused.ws.close_code == 1008
    # The ticket of the user's other session still opens the chat.
    chat = await open_chat(server.base_url, live, kept)
    assert chat.welcome["type"] == "welcome" and chat.welcome["you"]["id"] == owner.id
    await chat.close()


async def test_a_ticket_dies_when_every_session_ends(server: ChatServer) -> None:
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    ticket = await server.ticket(owner, live)
    await auth_db.revoke_user_sessions(server.pool, owner.id, reason="password_changed")
    refused = await open_chat(server.base_url, live, ticket)
    assert refused.welcome["code"] == "invalid_ticket"
