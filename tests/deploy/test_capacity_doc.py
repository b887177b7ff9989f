"""docs/capacity.md shows what docs/capacity_model.py computes."""
from __future__ import annotations

import importlib.util

from tests.deploy.manifests import ROOT

MODEL = ROOT / "docs" / "capacity_model.py"


def _model():
    spec = importlib.util.spec_from_file_location("capacity_model", MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_capacity_tables_are_the_models_output():
    model = _model()
    doc = (ROOT / "docs" / "capacity.md").read_text()
    shown = doc.split(model.BEGIN, 1)[1].split(model.END, 1)[0].strip("\n")
    assert shown == model.tables(model.MEASURED, model.WORKLOAD).strip("\n"), (
        "docs/capacity.md is out of date: run .venv/bin/python docs/capacity_model.py --write")


def test_the_matcher_row_respects_the_partitions_and_the_placeholders_are_marked():
    model = _model()
    result = model.model(model.MEASURED, model.WORKLOAD)
    for users, row in result["rows"].items():
        assert row["matchers"] >= 2 and row["gateways"] >= 2
    text = model.tables(model.MEASURED, model.WORKLOAD)
    for name, value in model.MEASURED.items():
        if value is None:  # every unmeasured figure shows as a placeholder, never as a number
            assert "**?**" in text
