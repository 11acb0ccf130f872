"""Coworker: a self-hosted, Slack-native AI coworker."""

__version__ = "0.1.0"
