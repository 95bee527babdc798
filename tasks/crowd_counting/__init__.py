"""Crowd counting transfer task: ShanghaiTech A/B, density maps, a CSRNet-style counter.

Import `tasks.crowd_counting.task` to register the "crowd_counting" TransferTask (the CLI
does so explicitly); `tasks.crowd_counting.sample` writes the bundled sample data;
`tasks.crowd_counting.options` declares its `--opt` keys.
"""

# What `bench list datasets` says about each dataset (tasks.crowd_counting.data reads them).
LAYOUTS = {
    f"shanghaitech-{p.lower()}": f"<data-root>/part_{p}/{{train,test}}_data/images/IMG_<n>.jpg "
    f"with ground_truth/GT_IMG_<n>.mat (also under ShanghaiTech/, or part_{p}_final/); "
    f"{kernel} density kernel"
    for p, kernel in (("A", "geometry-adaptive"), ("B", "fixed sigma-15"))
}
