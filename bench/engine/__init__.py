"""The training engine: device selection, hparams, run directories (their files, planning,
locks and the state read from them), checkpoints, schedules, DDP and the train loop.
Imports util/ (and, lazily, the records that runs/ writes, to tell a run's state)."""

from bench.util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "checkpoint": (
            "capture_rng_state",
            "load_checkpoint",
            "load_model_weights",
            "restore_rng_state",
            "save_checkpoint",
            "seed_everything",
        ),
        "device": ("resolve_name", "select_device", "set_deterministic"),
        "distributed": (
            "DistInfo",
            "barrier",
            "destroy_distributed",
            "dist_info",
            "init_distributed",
            "is_main_process",
            "wrap_ddp",
        ),
        "hparams": (
            "PRESETS",
            "HParams",
            "TrainHParams",
            "add_hparam_args",
            "add_train_args",
            "hparam",
            "hparams_from_args",
            "nondefault",
        ),
        "loop": (
            "Diverged",
            "Objective",
            "evaluate",
            "train",
        ),
        "rundir": (
            "MODES",
            "RESULT_FILE",
            "CheckpointEvery",
            "RunPlan",
            "is_finished",
            "prepare_run",
            "release_run",
            "run_dir",
            "run_hash",
        ),
        "schedule": (
            "LRSchedule",
            "build_optimizer",
            "lr_factor",
        ),
    },
)
