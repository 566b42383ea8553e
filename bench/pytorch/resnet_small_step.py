"""PyTorch reference for Chorus' step benchmark: the same small bottleneck ResNet V2
(preset resnetSmall: 3 stacks of 2 units, nF 64/128/256, widths nF/4, no conv bias,
219,482 trainable parameters), one SGD step (forward, backward, update) on random
CIFAR-sized data. Prints one JSON line per batch size.

Run with Debian's python3-torch:
  MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \
    /usr/bin/python3 bench/pytorch/resnet_small_step.py --threads 2
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


class Unit(nn.Module):
    def __init__(self, cin, width, cout, stride, first_of_net, project):
        super().__init__()
        self.first_of_net = first_of_net
        self.bn1 = None if first_of_net else nn.BatchNorm2d(cin, eps=1e-3, momentum=0.01)
        self.c1 = nn.Conv2d(cin, width, 1, stride, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)
        self.c2 = nn.Conv2d(width, width, 3, 1, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)
        self.c3 = nn.Conv2d(width, cout, 1, 1, bias=False)
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False) if project else None

    def forward(self, x):
        y = x if self.first_of_net else torch.relu(self.bn1(x))
        y = self.c1(y)
        y = self.c2(torch.relu(self.bn2(y)))
        y = self.c3(torch.relu(self.bn3(y)))
        return (self.proj(x) if self.proj is not None else x) + y


class ResNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, padding=1, bias=False), nn.BatchNorm2d(16, eps=1e-3), nn.ReLU())
        units, cin = [], 16
        for s, (nf, stride) in enumerate([(64, 1), (128, 2), (256, 2)]):
            for u in range(2):
                units.append(Unit(cin, nf // 4, nf, stride if u == 0 else 1, s == 0 and u == 0, u == 0))
                cin = nf
        self.units = nn.Sequential(*units)
        self.head_bn = nn.BatchNorm2d(256, eps=1e-3)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        x = self.units(self.stem(x))
        x = torch.relu(self.head_bn(x)).mean(dim=(2, 3))
        return self.fc(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ResNetSmall()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert params == 219_482, params
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    for batch in args.batches:
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 10, (batch,))
        times = []
        for i in range(args.steps + 2):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1000
        print(json.dumps({"framework": f"pytorch {torch.__version__}", "threads": args.threads, "batch": batch,
                          "params": params, "msPerStep": ms, "imagesPerSecond": batch / ms * 1000}))


if __name__ == "__main__":
    main()
