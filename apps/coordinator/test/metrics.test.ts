import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register as globalRegistry } from 'prom-client';
import { createMetrics, STEP_SECONDS_BUCKETS } from '../src/ops/metrics.js';

const lines = (text: string) => text.split('\n');

test('every metric shows up in the Prometheus text with its value', async () => {
  const m = createMetrics();
  m.step.set(42);
  m.workers.set(3);
  m.trainLoss.set(1.25);
  m.trainAccuracy.set(0.5);
  m.testAccuracy.set(0.625);
  m.imagesPerSecond.set(1536.5);
  m.learningRate.set(0.1);
  m.bytesReceived.inc(1000);
  m.bytesReceived.inc(24);
  m.bytesSent.inc(2048);
  m.shardsReissued.inc();
  m.messagesRefused.inc({ reason: 'stale_version' });
  m.messagesRefused.inc({ reason: 'stale_version' });
  m.messagesRefused.inc({ reason: 'bad_shape' }, 3);
  m.stepsTotal.inc();
  m.stepsTotal.inc();
  m.stepSeconds.observe(0.3);
  m.stepSeconds.observe(2);

  const text = await m.metrics();
  const expected = [
    'chorus_step 42',
    'chorus_workers 3',
    'chorus_train_loss 1.25',
    'chorus_train_accuracy 0.5',
    'chorus_test_accuracy 0.625',
    'chorus_images_per_second 1536.5',
    'chorus_learning_rate 0.1',
    'chorus_bytes_received_total 1024',
    'chorus_bytes_sent_total 2048',
    'chorus_shards_reissued_total 1',
    'chorus_messages_refused_total{reason="stale_version"} 2',
    'chorus_messages_refused_total{reason="bad_shape"} 3',
    'chorus_steps_total 2',
    'chorus_step_seconds_bucket{le="0.25"} 0',
    'chorus_step_seconds_bucket{le="0.5"} 1',
    'chorus_step_seconds_bucket{le="2.5"} 2',
    'chorus_step_seconds_bucket{le="+Inf"} 2',
    'chorus_step_seconds_sum 2.3',
    'chorus_step_seconds_count 2',
    '# TYPE chorus_step gauge',
    '# TYPE chorus_steps_total counter',
    '# TYPE chorus_messages_refused_total counter',
    '# TYPE chorus_step_seconds histogram',
    '# TYPE chorus_worker_images_per_second gauge',
  ];
  for (const line of expected) assert.ok(lines(text).includes(line), `missing line '${line}' in:\n${text}`);
  assert.equal(lines(text).filter((l) => l.startsWith('chorus_step_seconds_bucket')).length, STEP_SECONDS_BUCKETS.length + 1);
  assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
  assert.equal(m.contentType, m.registry.contentType);

  m.workers.dec();
  m.step.inc();
  const later = await m.metrics();
  assert.ok(lines(later).includes('chorus_workers 2'));
  assert.ok(lines(later).includes('chorus_step 43'));
});

test("the main thread's busy time counts work, not waiting", async () => {
  const m = createMetrics();
  const busy = async () => Number(/^chorus_event_loop_busy_seconds_total (\S+)$/m.exec(await m.metrics())?.[1]);
  const start = await busy();
  // 150 ms of work on this thread, then 300 ms of waiting on a timer.
  const until = performance.now() + 150;
  while (performance.now() < until);
  const afterWork = await busy();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const afterWait = await busy();
  assert.ok(afterWork - start >= 0.14, `busy ${afterWork - start} s over 150 ms of work`);
  assert.ok(afterWait - afterWork < 0.1, `busy ${afterWait - afterWork} s over 300 ms of waiting`);
});

test('per-worker throughput series are labelled and removed when the worker leaves', async () => {
  const m = createMetrics();
  m.setWorkerImagesPerSecond('w1', 'webgpu', 812.5);
  m.setWorkerImagesPerSecond('w2', 'tensorflow', 300);
  m.setWorkerImagesPerSecond('w1', 'webgpu', 820);
  let text = await m.metrics();
  assert.ok(lines(text).includes('chorus_worker_images_per_second{worker="w1",backend="webgpu"} 820'), text);
  assert.ok(lines(text).includes('chorus_worker_images_per_second{worker="w2",backend="tensorflow"} 300'), text);

  m.removeWorker('w1');
  text = await m.metrics();
  assert.ok(!text.includes('worker="w1"'), text);
  assert.ok(lines(text).includes('chorus_worker_images_per_second{worker="w2",backend="tensorflow"} 300'));

  // A worker that changes backend keeps only its newest series; removing an unknown worker is a no-op.
  m.setWorkerImagesPerSecond('w2', 'cpu', 10);
  m.removeWorker('nobody');
  text = await m.metrics();
  assert.ok(!text.includes('backend="tensorflow"'), text);
  assert.ok(lines(text).includes('chorus_worker_images_per_second{worker="w2",backend="cpu"} 10'));
  m.removeWorker('w2');
  assert.ok(!(await m.metrics()).includes('chorus_worker_images_per_second{'));
});

test('each call has its own registry, apart from the global one', async () => {
  const a = createMetrics();
  const b = createMetrics();
  a.step.set(5);
  assert.ok(lines(await a.metrics()).includes('chorus_step 5'));
  assert.ok(lines(await b.metrics()).includes('chorus_step 0'));
  assert.equal(globalRegistry.getSingleMetric('chorus_step'), undefined);
  assert.ok(!(await a.metrics()).includes('process_cpu'));

  const withDefaults = createMetrics({ defaultMetrics: true });
  assert.match(await withDefaults.metrics(), /^process_cpu_user_seconds_total /m);
  assert.ok(!(await globalRegistry.metrics()).includes('chorus_'));
});

test('a gauge with no value yet is absent, not 0: test accuracy before any evaluation', async () => {
  const m = createMetrics();
  m.step.set(3);
  let text = await m.metrics();
  for (const name of ['chorus_test_accuracy', 'chorus_train_loss', 'chorus_train_accuracy', 'chorus_images_per_second', 'chorus_learning_rate']) {
    assert.ok(!text.includes(name), `${name} is listed before it has a value`);
  }
  m.testAccuracy.set(0);
  m.testAccuracy.set(0.41);
  text = await m.metrics();
  assert.ok(lines(text).includes('chorus_test_accuracy 0.41'));
  assert.equal(text.split('# TYPE chorus_test_accuracy').length, 2, 'registered once');
});

test('admission metrics: refused connections by reason and open connections by state', async () => {
  const m = createMetrics();
  m.connectionsRefused.inc({ reason: 'hello-timeout' });
  m.connections.set({ state: 'unauthenticated' }, 2);
  const text = await m.metrics();
  assert.ok(lines(text).includes('chorus_connections_refused_total{reason="hello-timeout"} 1'));
  assert.ok(lines(text).includes('chorus_connections{state="unauthenticated"} 2'));
});
