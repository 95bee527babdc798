"""Image-classification data that search and pretraining need: the Fashion-MNIST, CIFAR and
ImageNet-folder readers with their held-out split and safe unpickler (datasets), ImageNet
folders with a kept file list (imagefolder), the decode-once cache of a deterministic eval
set (decoded), transforms and whole-batch augmentation. Imports util/ only."""
