"""Crowd counting transfer task: ShanghaiTech A/B, density maps, a CSRNet-style counter.

Import `tasks.crowd_counting.task` to register the "crowd_counting" TransferTask (the CLI
does so explicitly); `tasks.crowd_counting.sample` writes the bundled sample data.
"""
