import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { StepRecord } from '@chorus/protocol';

export interface MetricsOptions {
  /** Also collect prom-client's default process metrics (CPU, memory, event loop) into this registry. */
  defaultMetrics?: boolean;
}

/** The coordinator's Prometheus metrics, in a registry of their own. */
export interface ChorusMetrics {
  readonly registry: Registry;
  /** The Content-Type to serve `metrics()` with. */
  readonly contentType: string;
  /** The Prometheus text exposition of every metric. */
  metrics(): Promise<string>;

  /** Completed steps (the weights version). */
  readonly step: Gauge;
  /** Ready workers. */
  readonly workers: Gauge;
  readonly trainLoss: Gauge;
  readonly trainAccuracy: Gauge;
  readonly testAccuracy: Gauge;
  /** Training throughput over all workers. */
  readonly imagesPerSecond: Gauge;
  readonly learningRate: Gauge;
  readonly bytesReceived: Counter;
  readonly bytesSent: Counter;
  readonly shardsReissued: Counter;
  readonly messagesRefused: Counter<'reason'>;
  /** WebSocket connections refused or closed by an admission limit, by limit. */
  readonly connectionsRefused: Counter<'reason'>;
  /** Open WebSocket connections: unauthenticated, worker, monitor. */
  readonly connections: Gauge<'state'>;
  readonly stepsTotal: Counter;
  /**
   * Seconds the main thread was busy (not waiting for sockets or timers), read when scraped. The
   * coordinator's reading, checking and summing of gradients, its optimizer and its sends all run
   * there one after another: a rate near 1 means the coordinator, not the workers, sets the pace.
   */
  readonly eventLoopBusySeconds: Counter;
  /** Wall time of whole steps. */
  readonly stepSeconds: Histogram;
  /** Per-worker throughput; prefer setWorkerImagesPerSecond/removeWorker, which track the label sets. */
  readonly workerImagesPerSecond: Gauge<'worker' | 'backend'>;

  /** Sets a worker's throughput; a worker that changes backend keeps only its newest series. */
  setWorkerImagesPerSecond(worker: string, backend: string, imagesPerSecond: number): void;
  /** Removes a departed worker's series. */
  removeWorker(worker: string): void;
  /** Sets the per-step gauges and counters from a finished step's record. */
  recordStep(record: StepRecord): void;
}

/** Step durations from tens of milliseconds (tiny models, fast GPUs) to minutes (large models on CPUs). */
export const STEP_SECONDS_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export function createMetrics(options: MetricsOptions = {}): ChorusMetrics {
  const registry = new Registry();
  const registers = [registry];
  const gauge = (name: string, help: string) => new Gauge({ name, help, registers });
  const counter = (name: string, help: string) => new Counter({ name, help, registers });
  /**
   * A gauge that is absent from /metrics until its first value: prom-client shows an unset
   * gauge as 0, and a test accuracy of 0 before any evaluation reads as a broken model.
   */
  const gaugeOnceSet = (name: string, help: string) => {
    const metric = new Gauge({ name, help, registers: [] });
    const set = metric.set.bind(metric);
    metric.set = ((...args: Parameters<Gauge['set']>) => {
      if (!registry.getSingleMetric(name)) registry.registerMetric(metric);
      return set(...(args as [number]));
    }) as Gauge['set'];
    return metric;
  };

  const workerImagesPerSecond = new Gauge<'worker' | 'backend'>({
    name: 'chorus_worker_images_per_second',
    help: 'Training throughput of one worker, in images per second.',
    labelNames: ['worker', 'backend'] as const,
    registers,
  });
  /** worker id -> backend label of its current series. */
  const workerBackends = new Map<string, string>();

  const metrics: ChorusMetrics = {
    registry,
    contentType: registry.contentType,
    metrics: () => registry.metrics(),
    step: gauge('chorus_step', 'Completed training steps (the version of the master weights).'),
    workers: gauge('chorus_workers', 'Workers that are ready to train.'),
    trainLoss: gaugeOnceSet('chorus_train_loss', 'Training loss of the latest step.'),
    trainAccuracy: gaugeOnceSet('chorus_train_accuracy', 'Training accuracy of the latest step.'),
    testAccuracy: gaugeOnceSet('chorus_test_accuracy', 'Accuracy on the test set at the latest evaluation.'),
    imagesPerSecond: gaugeOnceSet('chorus_images_per_second', 'Training throughput over all workers, in images per second.'),
    learningRate: gaugeOnceSet('chorus_learning_rate', 'Learning rate of the latest step.'),
    bytesReceived: counter('chorus_bytes_received_total', 'Bytes received from workers.'),
    bytesSent: counter('chorus_bytes_sent_total', 'Bytes sent to workers.'),
    shardsReissued: counter('chorus_shards_reissued_total', 'Shards given to another worker after a worker failed or was too slow.'),
    messagesRefused: new Counter<'reason'>({
      name: 'chorus_messages_refused_total',
      help: 'Messages from workers that were refused, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    connectionsRefused: new Counter<'reason'>({
      name: 'chorus_connections_refused_total',
      help: 'WebSocket connections refused or closed by an admission limit (too many connections, hello timeout, address on hold, frame too large before hello).',
      labelNames: ['reason'] as const,
      registers,
    }),
    connections: new Gauge<'state'>({
      name: 'chorus_connections',
      help: 'Open WebSocket connections, by state: unauthenticated (no valid hello yet), worker, monitor.',
      labelNames: ['state'] as const,
      registers,
    }),
    stepsTotal: counter('chorus_steps_total', 'Training steps completed by this coordinator process.'),
    eventLoopBusySeconds: eventLoopBusy(registers),
    stepSeconds: new Histogram({
      name: 'chorus_step_seconds',
      help: 'Wall time of a training step, in seconds.',
      buckets: STEP_SECONDS_BUCKETS,
      registers,
    }),
    workerImagesPerSecond,
    setWorkerImagesPerSecond(worker, backend, imagesPerSecond) {
      const previous = workerBackends.get(worker);
      if (previous !== undefined && previous !== backend) workerImagesPerSecond.remove({ worker, backend: previous });
      workerBackends.set(worker, backend);
      workerImagesPerSecond.set({ worker, backend }, imagesPerSecond);
    },
    recordStep(record) {
      metrics.step.set(record.step);
      metrics.stepsTotal.inc();
      metrics.trainLoss.set(record.loss);
      metrics.trainAccuracy.set(record.accuracy);
      metrics.learningRate.set(record.lr);
      metrics.imagesPerSecond.set(record.imagesPerSecond);
      metrics.stepSeconds.observe(record.seconds);
    },
    removeWorker(worker) {
      const backend = workerBackends.get(worker);
      if (backend === undefined) return;
      workerImagesPerSecond.remove({ worker, backend });
      workerBackends.delete(worker);
    },
  };
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry });
  return metrics;
}

/** chorus_event_loop_busy_seconds_total, from Node's event loop utilisation since this call. */
function eventLoopBusy(registers: Registry[]): Counter {
  let counted = performance.eventLoopUtilization().active;
  return new Counter({
    name: 'chorus_event_loop_busy_seconds_total',
    help: "Seconds the coordinator's main thread was busy rather than waiting for sockets or timers: its serial work (reading, checking and summing gradients, the optimizer, sending updates, garbage collection). A rate near 1 means the coordinator sets the pace of the run.",
    registers,
    collect() {
      const active = performance.eventLoopUtilization().active;
      // A counter that went down would make prom-client throw and /metrics fail.
      if (active <= counted) return;
      this.inc((active - counted) / 1000);
      counted = active;
    },
  });
}
