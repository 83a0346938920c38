"""The short form of ``scripts/faults.py``: SIGKILL under a mixed load of all four formats."""

from __future__ import annotations

from scripts import faults


def test_sigkill_under_load_loses_and_duplicates_nothing() -> None:
    lines: list[str] = []
    summary = faults.run(quick=True, log=lines.append)
    report = "\n".join([*lines, summary.table(), *summary.failures])
    assert summary.crashes == 4, report
    assert summary.acknowledged > 500, report
    assert (summary.lost, summary.duplicated, summary.rejected_stored, summary.fivexx) == (0, 0, 0, 0), report
    assert summary.ok, report
