import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics } from '@chorus/coordinator';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS } from '@chorus/model';
import { connectWs } from '@chorus/node-worker';
import { ChorusWorker } from '@chorus/worker';
import { cifarDir } from './support.js';

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
const data = await loadCifar10(cifarDir);

test('a worker that holds no share is idle, with the reason, and the shortage is said once when it starts', { timeout: 120_000 }, async () => {
  // Batch 16 in BatchNorm groups of 8 is two groups: a third worker cannot have a share.
  const coordinator = new Coordinator({
    config: {
      preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps: 3, lr: 0.1, optimizer: 'sgd', weightDecay: 0,
      warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 2, augment: false,
    },
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 3, evalExamples: 0, checkpointEvery: 0 },
    data,
    token: 'secret',
    log: createLogger({ quiet: true }),
    metrics: createMetrics(),
  });
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics: createMetrics(), log: createLogger({ quiet: true }) });
  const { port } = await server.listen();
  const workers = Array.from({ length: 3 }, (_, i) =>
    new ChorusWorker({
      url: `ws://127.0.0.1:${port}/ws`,
      token: 'secret',
      connect: connectWs,
      runtime: { kind: 'node', backend: 'wasm', device: 'test', cores: 1, microBatch: 8, agent: `worker ${i}` },
    }),
  );
  const running = workers.map((w) => w.start());
  try {
    await coordinator.run();
    const rows = coordinator.status().workers;
    const idle = rows.filter((w) => w.state === 'idle');
    assert.equal(idle.length, 1, JSON.stringify(rows.map((w) => [w.id, w.state])));
    assert.match(idle[0].idleReason ?? '', /2 BatchNorm groups of 8, too few for 3 workers/);
    assert.equal(rows.filter((w) => w.state === 'training').length, 2);
    const said = coordinator.history.events.filter((e) => e.kind === 'idle');
    assert.equal(said.length, 1, 'said once, when the third worker joined');
    assert.match(said[0].message, /raise --batch or lower --bn-group/);
  } finally {
    for (const w of workers) w.stop();
    await Promise.all(running);
    await server.close();
  }
});
