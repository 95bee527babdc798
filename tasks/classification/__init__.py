"""Image classification task: CIFAR-10/100, ImageNet and Fashion-MNIST.

Import `bench.data.datasets` to register the datasets (the CLI does so explicitly);
`tasks.classification.options` declares the task's `--opt` keys.
"""
