/**
 * The parameters of a ResNet V2 (He et al., "Identity Mappings in Deep Residual Networks").
 * Every architectural choice is a field, so presets are just values of this type.
 */
export interface StemSpec {
  filters: number;
  kernelSize: number;
  strides: number;
  /** Max-pool after the stem, for inputs larger than CIFAR's 32x32. */
  pool: { size: number; strides: number } | null;
}

export interface ResNetV2Spec {
  /** Height, width, channels. */
  inputShape: readonly [number, number, number];
  classes: number;
  stem: StemSpec;
  /** Residual units per stack; its length is the number of stacks (1..5). */
  units: readonly number[];
  /** Output filters nF of every unit of a stack. */
  filters: readonly number[];
  /** Bottleneck widths per stack, or a ratio of nF (1/2 or 1/4). */
  bottleneck: readonly number[] | 0.5 | 0.25;
  /** Stride of the first unit of each stack (carried by its first 1x1 conv and its projection). */
  strides: readonly number[];
  /** Kernel size of the middle conv of every bottleneck unit. */
  kernelSize: number;
  /** Bias on conv and dense layers. */
  bias: boolean;
  /**
   * A shortcut that bridges a whole stack of units (the seed's open question): identity when
   * the shape is unchanged, else a 1x1 projection with the stack's stride. Off in every preset.
   */
  stackShortcut: boolean;
}

export interface ResolvedStack {
  units: number;
  filters: number;
  width: number;
  strides: number;
}

/** Checks a spec and resolves per-stack widths; throws a message that names the bad field. */
export function resolveStacks(spec: ResNetV2Spec): ResolvedStack[] {
  const n = spec.units.length;
  if (n < 1 || n > 5) throw new Error(`ResNetV2Spec.units: 1 to 5 stacks expected, got ${n}`);
  const sameLength = (field: 'filters' | 'strides', value: readonly number[]) => {
    if (value.length !== n) {
      throw new Error(`ResNetV2Spec.${field}: ${n} entries expected (one per stack), got ${value.length}`);
    }
  };
  sameLength('filters', spec.filters);
  sameLength('strides', spec.strides);
  let widths: readonly number[];
  if (Array.isArray(spec.bottleneck)) {
    widths = spec.bottleneck;
    if (widths.length !== n) {
      throw new Error(`ResNetV2Spec.bottleneck: ${n} widths expected, got ${widths.length}`);
    }
  } else {
    const ratio = spec.bottleneck as number;
    if (ratio !== 0.5 && ratio !== 0.25) {
      throw new Error(`ResNetV2Spec.bottleneck: a ratio must be 0.5 or 0.25, got ${ratio}`);
    }
    widths = spec.filters.map((f) => Math.max(1, Math.round(f * ratio)));
  }
  const positiveInt = (what: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) throw new Error(`ResNetV2Spec.${what}: positive integer expected, got ${v}`);
  };
  spec.units.forEach((v, i) => positiveInt(`units[${i}]`, v));
  spec.filters.forEach((v, i) => positiveInt(`filters[${i}]`, v));
  widths.forEach((v, i) => positiveInt(`bottleneck[${i}]`, v));
  spec.strides.forEach((v, i) => positiveInt(`strides[${i}]`, v));
  spec.inputShape.forEach((v, i) => positiveInt(`inputShape[${i}]`, v));
  positiveInt('classes', spec.classes);
  positiveInt('kernelSize', spec.kernelSize);
  positiveInt('stem.filters', spec.stem.filters);
  positiveInt('stem.kernelSize', spec.stem.kernelSize);
  positiveInt('stem.strides', spec.stem.strides);
  return spec.units.map((units, i) => ({
    units,
    filters: spec.filters[i],
    width: widths[i],
    strides: spec.strides[i],
  }));
}

/** BatchNorm's epsilon and running-statistics momentum: Keras' defaults, used by every trainer and the exported model. */
export const BN_EPSILON = 1e-3;
export const BN_MOMENTUM = 0.99;
