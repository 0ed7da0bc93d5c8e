"""The validation report: its table, its summary, its disagreements section and the exit code of ``validate``."""

import numpy as np
import pytest

from spde_tokens import cli
from spde_tokens.validation import report
from spde_tokens.validation.common import VERDICTS, make_row, verdict


def _rows():
    return [
        make_row("a", "mass", "≤ 1e-12", 3e-16, "rounding", True),
        make_row("a", "energy | decrease", "≤ 1e-13", 0.5, "rounding", False),
        {"case": "b", "quantity": "claim X", "expected": "decays", "measured": "grows (z = 11)",
         "tolerance": "4 SE", "verdict": verdict(False, claim=True)},
    ]


def test_verdicts():
    assert (verdict(True), verdict(False), verdict(True, claim=True), verdict(False, claim=True)) == \
        ("pass", "fail", "pass", "disagrees")
    assert set(VERDICTS) == {"pass", "fail", "disagrees"}


def test_report_lists_rows_and_disagreements(tmp_path):
    rows = _rows()
    (tmp_path / "a.png").write_bytes(b"png")
    path = report.write_report(rows, {"a": 1.0, "b": 2.0}, str(tmp_path), quick=True)
    text = open(path).read()
    assert "1 of 3 rows pass, 1 disagree with a claim of DESIGN 5 or of the papers (evidence in the row), 1 fail." \
        in text
    table = [line for line in text.splitlines() if line.startswith("| a") or line.startswith("| b")]
    assert len(table) == 3 and all(line.count("|") == 7 for line in table)  # "|" inside a cell is escaped
    section = text.split("## Where the measurements disagree with a published claim")[1]
    assert "claim X" in section and "grows (z = 11)" in section and "mass" not in section
    assert "![a](a.png)" in text and "![b]" not in text  # only figures that exist
    plain = report.format_table(rows)
    assert plain.splitlines()[0].split() == list(report.COLUMNS) and len(plain.splitlines()) == 5


def test_docs_page_generated_from_a_run(tmp_path):
    """write_docs: per case its module docstring, its figure copied beside the page, its rows and verdicts."""
    out = tmp_path / "run"
    out.mkdir()
    from PIL import Image

    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[10:20, 5:50] = (200, 30, 30)
    Image.fromarray(pixels).save(out / "ott_antonsen.png")
    rows = [make_row("ott_antonsen", "RK4 error at t = 2", "≤ 1e-10", 3e-14, "rounding", True),
            make_row("linear_growth/l=2", "rate", "1.0", 1.0, "1e-6", True)]
    page = report.write_docs(rows, {"ott_antonsen": 3.0, "linear_growth": 4.0}, str(out), True,
                             str(tmp_path / "docs" / "validation.md"))
    text = open(page).read()
    assert "spde-tokens validate --quick --case ott_antonsen -o FOLDER" in text
    assert "Ott–Antonsen reduction on S^1" in text  # the module docstring
    with Image.open(tmp_path / "docs" / "figures" / "validation" / "ott_antonsen.png") as copy:
        np.testing.assert_array_equal(np.asarray(copy.convert("RGB")), pixels)  # two colours survive the palette
    assert "![ott_antonsen](figures/validation/ott_antonsen.png)" in text and "![linear_growth]" not in text
    assert "| RK4 error at t = 2 | ≤ 1e-10 | 3e-14 | pass |" in text
    assert "rows: 1 pass, 0 fail, 0 disagrees" in text  # linear_growth/l=2 counts under linear_growth
    assert "Disagreements with published claims" not in text


def test_unknown_case_is_refused(tmp_path):
    with pytest.raises(ValueError, match="case must be one of"):
        report.run_validation(str(tmp_path), cases=["no_such_case"], echo=None)


@pytest.mark.parametrize("verdicts, code", [(("pass", "pass"), 0), (("pass", "disagrees"), 0),
                                             (("pass", "fail"), 1), (("disagrees", "fail"), 1)])
def test_validate_exit_code(monkeypatch, tmp_path, capsys, verdicts, code):
    """``spde-tokens validate`` exits 1 when a row fails; a disagreement with a published claim is not a failure."""
    rows = [{"verdict": v} for v in verdicts]
    monkeypatch.setattr(report, "run_validation", lambda out, quick, cases, docs: rows)
    assert cli.main(["validate", "--quick", "-o", str(tmp_path)]) == code
