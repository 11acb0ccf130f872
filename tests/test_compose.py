"""compose.yaml, the README's "Scale out" sample: what it promises is what it says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "compose.yaml"


def test_three_replicas_in_http_mode_on_postgresql_with_pgvector() -> None:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["db"]["image"].startswith("pgvector/pgvector:pg")
    bots = {name: s for name, s in services.items() if "python -m bot" in str(s.get("command"))}
    assert sorted(bots) == ["bot1", "bot2", "bot3"]
    for bot in bots.values():
        env = bot["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://coworker:${POSTGRES_PASSWORD}@db:")
        assert "SLACK_APP_TOKEN" not in env and env["PORT"] == "3000"  # HTTP mode
        assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    upstream = yaml.safe_load(COMPOSE.read_text())["configs"]["nginx"]["content"]
    assert all(f"server {name}:3000" in upstream for name in bots)
