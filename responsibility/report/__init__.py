"""Reports for people: a self-contained HTML report and PNG figures (matplotlib, imported on first use)."""

from responsibility.report.html import explanation_html, write_html

__all__ = ["explanation_html", "write_html"]
