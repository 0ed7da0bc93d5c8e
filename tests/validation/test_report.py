"""The validation report: its table, its summary, its disagreements section, the docs page and the exit code of
``validate``."""

import numpy as np
import pytest

from spde_tokens import cli
from spde_tokens.validation import report
from spde_tokens.validation.common import check, claim, info


def _rows():
    theory = check("b", "rate: c", 0.8, 0.79, "4 SE", True)
    return [
        check("a", "mass", "≤ 1e-12", 3e-16, "rounding", True),
        check("a", "energy | decrease", "≤ 1e-13", 0.5, "rounding", False),
        theory,
        claim("b", "claim X", "decays", "grows (z = 11)", "4 SE", False, [theory]),
        info("b", "ratio Y", "0.66", "not a claim"),
    ]


def test_summary_counts_verdicts_and_leaves_measurements_out():
    assert report.summary(_rows()) == ("2 of 4 rows with a verdict pass, 1 disagree with a published claim (evidence "
                                       "in the row), 1 fail; 1 rows are measurements without a verdict.")
    assert report.summary(_rows()[:1]).endswith("0 fail.")


def test_report_lists_rows_and_disagreements(tmp_path):
    rows = _rows()
    (tmp_path / "a.png").write_bytes(b"png")
    text = open(report.write_report(rows, {"a": 1.0, "b": 2.0}, str(tmp_path), quick=True)).read()
    assert report.summary(rows) in text
    table = [line for line in text.splitlines() if line.startswith("| a") or line.startswith("| b")]
    assert len(table) == 5 and all(line.count("|") == 7 for line in table)  # "|" inside a cell is escaped
    assert table[-1].startswith("| b | ratio Y |") and table[-1].endswith("| info | not a claim |")
    section = text.split("## Where the measurements disagree with a published claim")[1]
    assert "claim X" in section and "grows (z = 11)" in section and "mass" not in section
    assert "![a](a.png)" in text and "![b]" not in text  # only figures that exist
    plain = report.format_table(rows).splitlines()
    assert plain[0].split() == list(report.COLUMNS) and len(plain) == 7
    assert plain[2].startswith("a ") and plain[2].rstrip().endswith("pass")  # the case first, the verdict last


def test_docs_page_generated_from_a_run(tmp_path):
    """write_docs: per case its module docstring, its figure copied beside the page, its rows and verdicts."""
    out = tmp_path / "run"
    out.mkdir()
    from PIL import Image

    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[10:20, 5:50] = (200, 30, 30)
    Image.fromarray(pixels).save(out / "ott_antonsen.png")
    rows = [check("ott_antonsen", "RK4 error at t = 2", "≤ 1e-10", 3e-14, "rounding", True),
            check("linear_growth", "l=2: rate", "1.0", 1.0, "1e-6", True),
            info("linear_growth", "l=3: a measurement", "2.5", "not judged")]
    page = report.write_docs(rows, {"ott_antonsen": 3.0, "linear_growth": 4.0}, str(out), True,
                             str(tmp_path / "docs" / "validation.md"))
    text = open(page).read()
    assert "spde-tokens validate --quick --case ott_antonsen -o FOLDER" in text
    assert "Ott–Antonsen reduction on S^1" in text  # the module docstring
    with Image.open(tmp_path / "docs" / "figures" / "validation" / "ott_antonsen.png") as copy:
        np.testing.assert_array_equal(np.asarray(copy.convert("RGB")), pixels)  # two colours survive the palette
    assert "![ott_antonsen](figures/validation/ott_antonsen.png)" in text and "![linear_growth]" not in text
    assert "| RK4 error at t = 2 | ≤ 1e-10 | 3e-14 | pass |" in text
    assert "rows: 1 pass, 0 fail, 0 disagrees, 1 info" in text  # linear_growth
    assert "Disagreements with published claims" not in text


def test_unknown_case_is_refused(tmp_path):
    with pytest.raises(ValueError, match="case must be one of"):
        report.run_validation(str(tmp_path), cases=["no_such_case"], echo=None)


@pytest.mark.parametrize("verdicts, code", [(("pass", "pass"), 0), (("pass", "disagrees"), 0), (("pass", "info"), 0),
                                             (("pass", "fail"), 1), (("disagrees", "fail"), 1)])
def test_validate_exit_code(monkeypatch, tmp_path, capsys, verdicts, code):
    """``spde-tokens validate`` exits 1 when a row fails; a disagreement with a published claim is not a failure."""
    rows = [{"verdict": v} for v in verdicts]
    monkeypatch.setattr(report, "run_validation", lambda out, quick, cases, docs: rows)
    assert cli.main(["validate", "--quick", "-o", str(tmp_path)]) == code
