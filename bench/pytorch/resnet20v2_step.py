"""PyTorch side of the side-by-side benchmark (apps/node-worker/bench/cpu-vs-pytorch.bench.ts):
Chorus' resnet20v2 preset, built layer for layer as packages/model/src/graph.ts builds it, and
timed one SGD step (forward, backward, update) at a time on random CIFAR-sized data.

The network (Keras/Atienza CIFAR ResNet V2, depth 20): a 3x3 stem conv (16) -> BN -> ReLU,
then 3 stacks of 2 full pre-activation bottleneck units (nF 64/128/256, widths 16/64/128,
strides 1/2/2 on the first 1x1 conv and on the 1x1 projection of every stack's first unit; the
network's very first unit skips its first BN/ReLU, the stem has just done them), then
BN -> ReLU -> global average pool -> dense. Conv and dense layers have a bias, as in Chorus'
preset (bias: true). BatchNorm epsilon 1e-3. 570,602 trainable parameters, asserted below.

Chorus normalises BatchNorm per group of 32 examples ("ghost" BatchNorm, so that a step does
not depend on how the batch is sharded); plain BatchNorm2d here does the same arithmetic on the
whole batch at once, which is what a PyTorch user would run.

Prints one JSON line per (threads, batch). Run with Debian's python3-torch and the malloc
settings that keep glibc from returning (and re-faulting) PyTorch's large buffers every step:
  MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
    /usr/bin/python3 bench/pytorch/resnet20v2_step.py --threads 1 2 --batches 32 128
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

EPS = 1e-3
PARAMS = 570_602


def bn(channels):
    return nn.BatchNorm2d(channels, eps=EPS)


class Unit(nn.Module):
    """One full pre-activation bottleneck unit: (BN -> ReLU -> conv) x 3 plus the shortcut."""

    def __init__(self, cin, width, cout, stride, first_of_net, project):
        super().__init__()
        self.first_of_net = first_of_net
        self.bn1 = None if first_of_net else bn(cin)
        self.c1 = nn.Conv2d(cin, width, 1, stride)
        self.bn2 = bn(width)
        self.c2 = nn.Conv2d(width, width, 3, 1, padding=1)
        self.bn3 = bn(width)
        self.c3 = nn.Conv2d(width, cout, 1, 1)
        self.proj = nn.Conv2d(cin, cout, 1, stride) if project else None

    def forward(self, x):
        y = x if self.first_of_net else torch.relu(self.bn1(x))
        y = self.c1(y)
        y = self.c2(torch.relu(self.bn2(y)))
        y = self.c3(torch.relu(self.bn3(y)))
        return (self.proj(x) if self.proj is not None else x) + y


class ResNet20V2(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, padding=1), bn(16), nn.ReLU())
        units, cin = [], 16
        for s, (nf, width, stride) in enumerate([(64, 16, 1), (128, 64, 2), (256, 128, 2)]):
            for u in range(2):
                units.append(Unit(cin, width, nf, stride if u == 0 else 1, s == 0 and u == 0, u == 0))
                cin = nf
        self.units = nn.Sequential(*units)
        self.head_bn = bn(256)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        x = self.units(self.stem(x))
        x = torch.relu(self.head_bn(x)).mean(dim=(2, 3))
        return self.fc(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting, after 2 warm-up steps")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ResNet20V2()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert params == PARAMS, f"{params} trainable parameters, Chorus' resnet20v2 has {PARAMS}"
    # The optimizer Chorus' coordinator runs by default.
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            x = torch.randn(batch, 3, 32, 32)
            y = torch.randint(0, 10, (batch,))
            times = []
            for i in range(args.steps + 2):
                t0 = time.perf_counter()
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
                if i >= 2:  # the first steps allocate and pick kernels
                    times.append(time.perf_counter() - t0)
            ms = statistics.median(times) * 1000
            print(json.dumps({"framework": f"pytorch {torch.__version__}", "threads": threads, "batch": batch,
                              "params": params, "steps": args.steps, "msPerStep": ms,
                              "imagesPerSecond": batch / ms * 1000}), flush=True)


if __name__ == "__main__":
    main()
