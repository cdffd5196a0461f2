"""Our gateway as a row of ../shared/peers-bench: `gateway up` with one OpenAI-compatible provider at the
bench's mock. Used by bench/peers-targets.json; run it with bench/peers.sh."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import yaml


def main() -> None:
    upstream, port = sys.argv[1], sys.argv[2]
    config = Path(tempfile.mkdtemp(prefix="gateway-peers-")) / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "keys": [{"key": "sk-peers-bench", "project": "bench"}],
        "providers": {"openai": {"kind": "openai", "base_url": upstream, "api_key_env": "PEERS_UPSTREAM_KEY"}},
    }))
    os.environ.update({"PEERS_UPSTREAM_KEY": "sk-any", "GATEWAY_TOPIC_PREFIX": "peers."})
    os.execv(sys.executable, [sys.executable, "-m", "infra.cli", "--config", str(config), "up", "--port", port])


if __name__ == "__main__":
    main()
