"""The model card's evaluation tables are the committed `tamperscan evaluate` reports."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _card_tables():
    spec = importlib.util.spec_from_file_location("card_tables", ROOT / "scripts/card_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_card_tables_match_the_reports():
    tables = _card_tables()
    card = (ROOT / "models/MODEL_CARD.md").read_text()
    assert tables.update_card(card, ROOT / "models/eval") == card, \
        "MODEL_CARD.md tables differ from models/eval: run scripts/card_tables.py"


def test_a_changed_report_changes_the_card(tmp_path):
    tables = _card_tables()
    for path in (ROOT / "models/eval").iterdir():
        text = path.read_text()
        if path.name == "noso.md":  # NoSo's `final` F1 becomes 0.999
            text = re.sub(r"^\| final \| [0-9.]+ \|", "| final | 0.999 |", text, flags=re.M)
        (tmp_path / path.name).write_text(text)
    card = (ROOT / "models/MODEL_CARD.md").read_text()
    updated = tables.update_card(card, tmp_path)
    assert "| final | 0.999 |" in updated and "| final | 0.999 |" not in card
