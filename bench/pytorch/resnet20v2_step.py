"""PyTorch side of the side-by-side benchmark (apps/node-worker/bench/cpu-vs-pytorch.bench.ts):
Chorus' resnet20v2 preset (Keras/Atienza CIFAR ResNet V2 of depth 20: 3 stacks of 2 bottleneck
units, nF 64/128/256, widths 16/64/128, strides 1/2/2, bias on every conv and the dense layer;
570,602 trainable parameters, asserted), built by resnet_v2.py as Chorus' graph.ts builds it,
timed one SGD step at a time on random CIFAR-sized data. One JSON line per (threads, batch).

Chorus normalises BatchNorm per group of 32 examples ("ghost" BatchNorm, so that a step does
not depend on how the batch is sharded); plain BatchNorm2d does the same arithmetic on the whole
batch at once, which is what a PyTorch user runs.

Run with Debian's python3-torch and the malloc settings that keep glibc from unmapping (and
faulting in again) PyTorch's large buffers every step:
  MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
    /usr/bin/python3 bench/pytorch/resnet20v2_step.py --threads 1 2 --batches 32 128
"""
import argparse

import torch

from resnet_v2 import ResNetV2, time_steps, trainable

PARAMS = 570_602


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting, after 2 warm-up steps")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ResNetV2([(2, 64, 16, 1), (2, 128, 64, 2), (2, 256, 128, 2)], bias=True)
    assert trainable(model) == PARAMS, f"{trainable(model)} trainable parameters, Chorus' resnet20v2 has {PARAMS}"
    for threads in args.threads:
        time_steps(model, threads, args.batches, args.steps)


if __name__ == "__main__":
    main()
