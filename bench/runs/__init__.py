"""Run directories as a whole: what each one holds (state), and repairing damaged ones.

Owns reading a run directory's state from its files alone (bench.runs.state), the safe
repairs of `bench runs check --repair` (bench.runs.repair). May import bench.engine (the
run-directory layout and checkpoints), bench.io, bench.results and, lazily, bench.cell
and bench.classify (to re-score a run); never tasks/.
"""
