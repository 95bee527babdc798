"""Reports: result records (from one or several output roots) become tables and plots.

Owns collecting records into rows (collect), paired differences to the controls with their
t-intervals and the verdicts on the paper's three claims (paired), the share-of-gain score
(score), seed summaries per benchmark cell x ticket (summary), ranks (rank), the CSV,
Markdown and LaTeX exporters (export), plots (plots) and the `bench leaderboard` job that
ties them together (leaderboard). May import bench.runs.records (records), bench.util.io,
bench.util.fingerprint, bench.util.paths, bench.util.errors, scipy and matplotlib (plots
only, when asked); never tasks/.
"""

FORMATS = ("csv", "md", "latex")  # the table formats of bench.report.export
