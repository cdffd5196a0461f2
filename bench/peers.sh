#!/usr/bin/env bash
# This gateway beside Portkey and LiteLLM in ../shared/peers-bench: same machine, mock and load.
#   bench/peers.sh                                 # baseline, portkey, litellm and this gateway
#   bench/peers.sh --only portkey --duration 5     # any bench.py option
set -euo pipefail
cd "$(dirname "$0")/.."
sed "s|\"\\.venv/bin/python\"|\"$(pwd)/.venv/bin/python\"|; s|\"env\": {|\"cwd\": \"$(pwd)\", \"env\": {|" \
  bench/peers-targets.json > /tmp/kafka-gateway-targets.json
args=("$@"); [[ " $* " == *" --only "* ]] || args=(--only portkey,litellm "$@")
exec ../shared/peers-bench/run.sh --targets-file /tmp/kafka-gateway-targets.json "${args[@]}"
