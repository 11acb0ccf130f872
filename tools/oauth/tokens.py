"""People's tokens for per-user servers: one row per (Slack user, server), sealed at rest.

The access and refresh tokens are sealed together (`bot.base.secretbox`); only when the
access token expires and which version of the row this is stay in the clear, because the
refresh decision and its race are settled by the database: a refresh leases the row with a
conditional update (`refreshing_until`), and writes its result only over the version it
started from. That holds across processes (replicas sharing PostgreSQL) as well as across
coroutines. A row no configured key opens is treated as no connection (the person is
asked to connect again), never as an error that stops a task.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from mcp.shared.auth import OAuthToken

from bot.base.clock import now
from bot.base.db import Database
from bot.base.errors import SecretUnreadable
from bot.base.secretbox import SecretBox

log = logging.getLogger(__name__)

_COLUMNS = "id, user_id, server, sealed, scope, expires_at, version, connected_at, refreshed_at"
#: A token is refreshed this long before it expires (a quarter of its life, if that is less).
REFRESH_MARGIN = 60.0


@dataclass(frozen=True)
class StoredToken:
    """A person's connection to one server, opened."""

    id: int
    user: str
    server: str
    version: int
    expires_at: float | None
    scope: str | None
    connected_at: float
    issued_at: float  # when this access token was stored (connected or refreshed)
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False, default=None)

    @property
    def due(self) -> bool:
        """Whether to refresh it before use: it expires within `REFRESH_MARGIN`, or within
        a quarter of its life for short-lived tokens (a token without expiry never does)."""
        if self.expires_at is None:
            return False
        margin = min(REFRESH_MARGIN, max(0.0, self.expires_at - self.issued_at) / 4)
        return self.expires_at - now() <= margin

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= now()


def _expiry(token: OAuthToken) -> float | None:
    return None if token.expires_in is None else now() + int(token.expires_in)


class TokenStore:
    """Reads and writes `oauth_tokens`; every secret passes through the box."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def _seal(self, token: OAuthToken) -> str:
        secret = {"access_token": token.access_token, "refresh_token": token.refresh_token}
        return self.box.seal(json.dumps(secret))

    async def get(self, user: str, server: str) -> StoredToken | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM oauth_tokens WHERE user_id = ? AND server = ?", (user, server)
        )
        if row is None:
            return None
        try:
            secret = json.loads(self.box.open(row["sealed"]))
        except SecretUnreadable:
            log.warning(
                "the %s token of %s does not open with COWORKER_SECRET_KEY (was the key "
                "replaced without keeping the old one?); they will be asked to connect again",
                server,
                user,
            )
            return None
        return StoredToken(
            id=int(row["id"]),
            user=row["user_id"],
            server=row["server"],
            version=int(row["version"]),
            expires_at=row["expires_at"],
            scope=row["scope"],
            connected_at=row["connected_at"],
            issued_at=row["refreshed_at"] or row["connected_at"],
            access_token=secret["access_token"],
            refresh_token=secret.get("refresh_token"),
        )

    async def save(self, user: str, server: str, token: OAuthToken) -> None:
        """A new connection (or a reconnection, which replaces the old one)."""
        t = now()
        await self.db.execute(
            "INSERT INTO oauth_tokens (user_id, server, sealed, scope, expires_at, version,"
            " connected_at) VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (user_id, server) DO UPDATE"
            " SET sealed = excluded.sealed, scope = excluded.scope,"
            " expires_at = excluded.expires_at, version = oauth_tokens.version + 1,"
            " refreshing_until = NULL, connected_at = excluded.connected_at, refreshed_at = NULL",
            (user, server, self._seal(token), token.scope, _expiry(token), t),
        )

    async def lease(self, token: StoredToken, seconds: float) -> bool:
        """Take the right to refresh `token` for `seconds`; False if another holds it or it
        changed since it was read."""
        t = now()
        changed = await self.db.execute(
            "UPDATE oauth_tokens SET refreshing_until = ? WHERE id = ? AND version = ?"
            " AND (refreshing_until IS NULL OR refreshing_until < ?)",
            (t + seconds, token.id, token.version, t),
        )
        return changed == 1

    async def release(self, token: StoredToken) -> None:
        await self.db.execute(
            "UPDATE oauth_tokens SET refreshing_until = NULL WHERE id = ? AND version = ?",
            (token.id, token.version),
        )

    async def replace(self, token: StoredToken, fresh: OAuthToken) -> bool:
        """Write a refresh's result over the version it started from; False if that is gone."""
        if fresh.refresh_token is None:  # RFC 6749 §6: the old one stays valid
            fresh = fresh.model_copy(update={"refresh_token": token.refresh_token})
        changed = await self.db.execute(
            "UPDATE oauth_tokens SET sealed = ?, scope = ?, expires_at = ?, version = version + 1,"
            " refreshing_until = NULL, refreshed_at = ? WHERE id = ? AND version = ?",
            (
                self._seal(fresh),
                fresh.scope or token.scope,
                _expiry(fresh),
                now(),
                token.id,
                token.version,
            ),
        )
        return changed == 1

    async def remove(self, user: str, server: str, *, version: int | None = None) -> bool:
        """Delete the connection (only at `version`, when given); True if a row went."""
        if version is None:
            sql, params = (
                "DELETE FROM oauth_tokens WHERE user_id = ? AND server = ?",
                (user, server),
            )
        else:
            sql = "DELETE FROM oauth_tokens WHERE user_id = ? AND server = ? AND version = ?"
            params = (user, server, version)  # type: ignore[assignment]
        return await self.db.execute(sql, params) == 1

    async def connected(self, user: str) -> dict[str, float]:
        """The servers `user` is connected to, with when they connected."""
        rows = await self.db.fetchall(
            "SELECT server, connected_at FROM oauth_tokens WHERE user_id = ? ORDER BY server",
            (user,),
        )
        return {row["server"]: float(row["connected_at"]) for row in rows}

    async def count(self, server: str) -> int:
        return int(
            await self.db.fetchval("SELECT COUNT(*) FROM oauth_tokens WHERE server = ?", (server,))
        )

    async def first_users(self, server: str, limit: int = 3) -> list[str]:
        """The people who connected to `server` first (whose token lists its tools)."""
        rows = await self.db.fetchall(
            "SELECT user_id FROM oauth_tokens WHERE server = ? ORDER BY connected_at, id LIMIT ?",
            (server, limit),
        )
        return [row["user_id"] for row in rows]

    async def reseal_all(self) -> int:
        """Seal every token again with the first key (after a key rotation); how many."""
        rows = await self.db.fetchall("SELECT id, sealed FROM oauth_tokens")
        done = 0
        for row in rows:
            try:
                sealed = self.box.reseal(row["sealed"])
            except SecretUnreadable:
                continue  # `get` says so when it is needed
            done += await self.db.execute(
                "UPDATE oauth_tokens SET sealed = ? WHERE id = ? AND sealed = ?",
                (sealed, row["id"], row["sealed"]),
            )
        return done
