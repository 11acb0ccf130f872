"""Per-user OAuth for MCP servers (the MCP authorization spec: OAuth 2.1 with PKCE).

    discovery   a 401 with WWW-Authenticate → protected resource metadata (RFC 9728)
                → authorization server metadata (RFC 8414 / OIDC discovery)
    clients     the OAuth client: given in .mcp.json, a Client ID Metadata Document,
                or dynamic registration (RFC 7591), stored sealed
    connector   Connect links (state + PKCE, in the database), the callback's code
                exchange, revocation
    refresh     tokens refreshed before expiry and after a 401, once across replicas
    tokens      one sealed row per (Slack user, server)
    auth        the bearer auth of one person's MCP session

Secrets are sealed with `COWORKER_SECRET_KEY` (`bot.base.secretbox`) before they reach the
database, and never reach logs, audit rows, the model or Slack.
"""
