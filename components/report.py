"""The deployability report: problems first with their fix, passed checks folded away."""

from __future__ import annotations

from collections import Counter

import streamlit as st

from deploystudio.checks import Check, CheckStatus

# Material icons ship with Streamlit, so they render where no emoji font is installed.
STATUS_MARKS = {
    CheckStatus.PASS: ":green[:material/check_circle:]",
    CheckStatus.WARN: ":orange[:material/warning:]",
    CheckStatus.FAIL: ":red[:material/cancel:]",
}
SUMMARY_BADGES = {CheckStatus.PASS: "green", CheckStatus.WARN: "orange", CheckStatus.FAIL: "red"}
SEVERITY_ORDER = (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.PASS)


def report_summary(checks: list[Check]) -> str:
    counts = Counter(c.status for c in checks)
    return " ".join(
        f":{SUMMARY_BADGES[status]}-badge[{counts[status]} {status.value}]"
        for status in SEVERITY_ORDER
        if counts[status]
    )


def _render_check(check: Check) -> None:
    st.markdown(f"{STATUS_MARKS[check.status]} **{check.name}**: {check.detail}")
    if check.fix:
        st.caption(f"Fix: {check.fix}")


def render_report(checks: list[Check]) -> None:
    st.markdown(report_summary(checks))
    problems = [c for c in checks if c.status is not CheckStatus.PASS]
    problems.sort(key=lambda c: SEVERITY_ORDER.index(c.status))
    for check in problems:
        _render_check(check)
    passed = [c for c in checks if c.status is CheckStatus.PASS]
    if passed:
        with st.expander(f"{len(passed)} check(s) passed", expanded=not problems):
            for check in passed:
                _render_check(check)
