"""Image-classification data that search and pretraining need: the dataset contract and
registry (base), load_splits and ImageNet folders (datasets), CIFAR's pickles through a
safe unpickler (cifar), Fashion-MNIST's IDX files (fashion_mnist), the held-out split and
its views (heldout), a kept folder file list (imagefolder), the decode-once cache of a
deterministic eval set (decoded), transforms and whole-batch augmentation. Imports util/
only."""
