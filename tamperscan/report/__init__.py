"""`tamperscan report`: a static, self-contained HTML report of a scan's output folder.

Static (no server, no CDN) so it opens from ``file://`` on an analyst's laptop or from any
static host next to the results. Modules: `data` (load, order, page the rows), `images`
(thumbnail/heatmap/mask figures for the top-K flagged rows), `html` (page and histogram),
`build` (ties them together).
"""

from tamperscan.report.build import build_report

__all__ = ["build_report"]
