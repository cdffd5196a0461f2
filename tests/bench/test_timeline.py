"""bench/timeline.py: its probes name functions the gateway still has, and its stages are read in order."""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.timeline import ORDER, PROBES, _cycles


def test_every_probe_names_a_function_of_the_gateway() -> None:
    for probes in PROBES.values():
        for module_name, path, _, _ in probes:
            owner: object = importlib.import_module(module_name)
            for name in path.split("."):
                owner = getattr(owner, name)
            assert callable(owner), f"{module_name}.{path}"


def test_a_request_takes_each_stage_at_or_after_the_stage_before(tmp_path: Path) -> None:
    order = ORDER["answer"]
    (tmp_path / "client.marks").write_text("100\tclient: request sent\n900\tclient: answer read\n")
    # A view's decode before the request was fetched is not the request's; the first one after it is.
    (tmp_path / "router.marks").write_text("150\trouter: request decoded (Avro)\n300\trouter: request fetched\n"
                                           "320\trouter: request decoded (Avro)\n340\trouter: request decoded (Avro)\n")

    [cycle] = _cycles(tmp_path, order)

    assert cycle == {"client: request sent": 100, "router: request fetched": 300,
                     "router: request decoded (Avro)": 320, "client: answer read": 900}
