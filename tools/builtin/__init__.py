"""Built-in MCP servers that run inside the bot process (slack, memory).

They are ordinary `MCPServer`s, so the gateway treats them like any other server: the same
tiers, scoping, validation and audit apply, and `doctor` lists them.
"""
