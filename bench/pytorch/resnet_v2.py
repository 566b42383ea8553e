"""Chorus' ResNet V2 in PyTorch, for the benchmarks that set Chorus side by side with PyTorch:
the network packages/model/src/graph.ts builds, and the timing of one SGD step.

A 3x3 stem conv (16) -> BN -> ReLU, then stacks of full pre-activation bottleneck units
((BN -> ReLU -> conv) x 3: 1x1 to the width, 3x3, 1x1 to nF) whose first unit carries the
stack's stride on its first 1x1 conv and on a 1x1 projection shortcut; the network's very first
unit skips its first BN/ReLU (the stem has just done them). Then BN -> ReLU -> global average
pool -> dense. `bias` is Chorus' spec.bias: on every conv (the dense layer always has one).
BatchNorm epsilon 1e-3, as in Chorus.
"""
import json
import statistics
import time

import torch
import torch.nn as nn

EPS = 1e-3


def bn(channels):
    return nn.BatchNorm2d(channels, eps=EPS)


class Unit(nn.Module):
    def __init__(self, cin, width, cout, stride, first_of_net, project, bias):
        super().__init__()
        self.first_of_net = first_of_net
        self.bn1 = None if first_of_net else bn(cin)
        self.c1 = nn.Conv2d(cin, width, 1, stride, bias=bias)
        self.bn2 = bn(width)
        self.c2 = nn.Conv2d(width, width, 3, 1, padding=1, bias=bias)
        self.bn3 = bn(width)
        self.c3 = nn.Conv2d(width, cout, 1, 1, bias=bias)
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=bias) if project else None

    def forward(self, x):
        y = x if self.first_of_net else torch.relu(self.bn1(x))
        y = self.c1(y)
        y = self.c2(torch.relu(self.bn2(y)))
        y = self.c3(torch.relu(self.bn3(y)))
        return (self.proj(x) if self.proj is not None else x) + y


class ResNetV2(nn.Module):
    """stacks: (units, nF, width, stride) per stack."""

    def __init__(self, stacks, bias, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, padding=1, bias=bias), bn(16), nn.ReLU())
        units, cin = [], 16
        for s, (count, nf, width, stride) in enumerate(stacks):
            for u in range(count):
                units.append(Unit(cin, width, nf, stride if u == 0 else 1, s == 0 and u == 0, u == 0, bias))
                cin = nf
        self.units = nn.Sequential(*units)
        self.head_bn = bn(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.units(self.stem(x))
        x = torch.relu(self.head_bn(x)).mean(dim=(2, 3))
        return self.fc(x)


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def time_steps(model, threads, batches, steps, warmup=2, **fields):
    """Prints one JSON line per batch: the median time of `steps` SGD steps (forward, backward,
    update; Chorus' default optimizer) after `warmup` steps that allocate and pick kernels."""
    torch.set_num_threads(threads)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    for batch in batches:
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 10, (batch,))
        times = []
        for i in range(steps + warmup):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1000
        print(json.dumps({"framework": f"pytorch {torch.__version__}", "threads": threads, "batch": batch,
                          "params": trainable(model), "steps": steps, "msPerStep": ms,
                          "imagesPerSecond": batch / ms * 1000, **fields}), flush=True)
