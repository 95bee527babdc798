"""Studies: a paper's whole grid from one TOML file, planned as cells and run through submitit.

schema  the study file: read with tomllib, every key and value checked before any work
plan    the graph of cells: each cell is one exact `bench ...` command line with its
        dependencies, the run directories it makes and its work in images processed
state   a cell's state read from the files alone (run directories, records, the cell lock)
job     what a submitit job runs: one cell's command as a subprocess, under the cell lock
launch  the driver: submits ready cells (submitit LocalExecutor or SlurmExecutor), resubmits
        killed ones, never submits the dependents of a failed cell, ends with the leaderboard
report  the plan and the states as text and JSON
tickets the tickets a study runs; what to say about a ticket file not made yet
work    a cell's work in images processed

May import bench's mechanism (bench.cli.commands to parse and check the cell commands it writes,
bench.engine, bench.ticket.schema, bench.runs.records) and submitit; never tasks/.
"""
