"""MCP gateway, approval policy and built-in MCP servers."""
