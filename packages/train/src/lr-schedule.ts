/**
 * Learning-rate schedule: linear warm-up, then constant, cosine decay to zero, or step decay
 * (x0.1 at 50% and 75% of training). The base LR follows the linear scaling rule (Goyal et al.):
 * it is given for a reference batch of 128 and scaled by B/128.
 */
export interface LrScheduleOptions {
  /** LR at the reference batch size. */
  baseLr: number;
  batch: number;
  referenceBatch?: number;
  warmupSteps: number;
  totalSteps: number;
  kind: 'constant' | 'cosine' | 'step';
}

export function scaledLr(baseLr: number, batch: number, referenceBatch = 128): number {
  return (baseLr * batch) / referenceBatch;
}

export function learningRate(options: LrScheduleOptions, step: number): number {
  const peak = scaledLr(options.baseLr, options.batch, options.referenceBatch);
  const { warmupSteps, totalSteps } = options;
  if (step < warmupSteps) return (peak * (step + 1)) / warmupSteps;
  const progress = totalSteps > warmupSteps ? Math.min(1, (step - warmupSteps) / (totalSteps - warmupSteps)) : 1;
  switch (options.kind) {
    case 'constant':
      return peak;
    case 'cosine':
      return 0.5 * peak * (1 + Math.cos(Math.PI * progress));
    case 'step':
      return peak * (progress >= 0.75 ? 0.01 : progress >= 0.5 ? 0.1 : 1);
  }
}
