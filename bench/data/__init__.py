"""Image-classification data that search and pretraining need: the Fashion-MNIST, CIFAR and
ImageNet-folder readers with their held-out split and safe unpickler (datasets), transforms
and whole-batch augmentation. Imports util/ only."""
