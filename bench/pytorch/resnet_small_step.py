"""PyTorch reference for Chorus' step benchmark: the same small bottleneck ResNet V2
(preset resnetSmall: 3 stacks of 2 units, nF 64/128/256, widths nF/4, no conv bias,
219,482 trainable parameters), one SGD step (forward, backward, update) on random
CIFAR-sized data. Prints one JSON line per batch size.

Run with Debian's python3-torch:
  MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
    /usr/bin/python3 bench/pytorch/resnet_small_step.py --threads 2
"""
import argparse

import torch

from resnet_v2 import ResNetV2, time_steps, trainable


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ResNetV2([(2, 64, 16, 1), (2, 128, 32, 2), (2, 256, 64, 2)], bias=False)
    assert trainable(model) == 219_482, trainable(model)
    time_steps(model, args.threads, args.batches, args.steps)


if __name__ == "__main__":
    main()
