"""Runs: the one run-and-score path (cell), result records (records), classification
pretraining cells (classify), each arm's pretrained init (pretrained), the task-adapter
contract and registry (transfer, task_options) and running every task (transfer_all).
Imports util/, models/, ticket/, data/, engine/, cost/; never tasks/."""
