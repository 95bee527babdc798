"""Runs: the one run-and-score path (cell), result records (records), classification
pretraining cells (classify), each arm's pretrained init (pretrained), the task-adapter
contract and registry (transfer, task_options), running every task (transfer_all) and the
safe repairs of `bench runs check --repair` (repair; a run's state is read by
bench.engine.state). Imports util/, models/, ticket/, data/, engine/, cost/; never tasks/."""
