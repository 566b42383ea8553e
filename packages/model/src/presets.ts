import type { ResNetV2Spec } from './spec.js';

const cifarStem = { filters: 16, kernelSize: 3, strides: 1, pool: null } as const;

/** The Keras/Atienza CIFAR ResNet V2 of depth 9n+2: three stacks of n bottleneck units. */
function atienza(unitsPerStack: number): ResNetV2Spec {
  return {
    inputShape: [32, 32, 3],
    classes: 10,
    stem: cifarStem,
    units: [unitsPerStack, unitsPerStack, unitsPerStack],
    filters: [64, 128, 256],
    bottleneck: [16, 64, 128],
    strides: [1, 2, 2],
    kernelSize: 3,
    bias: true,
    stackShortcut: false,
  };
}

export const PRESETS = {
  resnet20v2: atienza(2),
  resnet56v2: atienza(6),
  resnet110v2: atienza(12),
  /** The paper's ResNet-164: bottleneck nF/4, no bias. */
  resnet164v2: {
    ...atienza(18),
    bottleneck: 0.25,
    bias: false,
  },
  /** The seed's larger example: four stacks. */
  resnet4stack: {
    inputShape: [32, 32, 3],
    classes: 10,
    stem: cifarStem,
    units: [3, 6, 6, 3],
    filters: [64, 128, 256, 512],
    bottleneck: 0.25,
    strides: [1, 2, 2, 2],
    kernelSize: 3,
    bias: true,
    stackShortcut: false,
  },
  /**
   * A small bottleneck ResNet V2 (3 stacks of 2 units, nF/4, no bias; 219,482 trainable
   * parameters): the model of the PyTorch comparison benchmark and of short CPU runs.
   */
  resnetSmall: {
    inputShape: [32, 32, 3],
    classes: 10,
    stem: cifarStem,
    units: [2, 2, 2],
    filters: [64, 128, 256],
    bottleneck: 0.25,
    strides: [1, 2, 2],
    kernelSize: 3,
    bias: false,
    stackShortcut: false,
  },
  /** Tiny enough for finite-difference checks and browser tests on software WebGPU. */
  tiny: {
    inputShape: [32, 32, 3],
    classes: 10,
    stem: { filters: 4, kernelSize: 3, strides: 1, pool: null },
    units: [1, 1],
    filters: [8, 16],
    bottleneck: [4, 8],
    strides: [1, 2],
    kernelSize: 3,
    bias: true,
    stackShortcut: false,
  },
} satisfies Record<string, ResNetV2Spec>;

export type PresetName = keyof typeof PRESETS;

export function getPreset(name: string): ResNetV2Spec {
  const spec = (PRESETS as Record<string, ResNetV2Spec>)[name];
  if (!spec) {
    throw new Error(`unknown preset '${name}'; choose one of: ${Object.keys(PRESETS).join(', ')}`);
  }
  return spec;
}
