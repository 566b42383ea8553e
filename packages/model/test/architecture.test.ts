import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { PRESETS, createResNetV2, type ResNetV2Spec } from '../src/index.js';

await tf.setBackend('cpu');

function counts(spec: ResNetV2Spec): { total: number; trainable: number } {
  const model = createResNetV2(spec);
  const trainable = model.trainableWeights.reduce((a, w) => a + w.shape.reduce<number>((x, y) => x * (y ?? 1), 1), 0);
  const total = model.countParams();
  model.dispose();
  return { total, trainable };
}

const inbound = (model: tf.LayersModel, name: string): tf.layers.Layer[] =>
  model.getLayer(name).inboundNodes[0].inboundLayers as tf.layers.Layer[];
const className = (layer: tf.layers.Layer) => layer.getClassName();

test('preset parameter counts are exactly those of the blueprint table', () => {
  assert.deepEqual(counts(PRESETS.resnet20v2), { total: 574_090, trainable: 570_602 });
  assert.deepEqual(counts(PRESETS.resnet56v2), { total: 1_673_738, trainable: 1_663_338 });
  assert.deepEqual(counts(PRESETS.resnet110v2), { total: 3_323_210, trainable: 3_302_442 });
  assert.deepEqual(counts(PRESETS.resnet164v2), { total: 1_727_482, trainable: 1_703_258 });
  assert.equal(counts(PRESETS.resnetSmall).trainable, 219_482);
});

test('the four-stack preset has four stacks of 3, 6, 6, 3 units and nF 64..512', () => {
  const model = createResNetV2(PRESETS.resnet4stack);
  const units = [1, 2, 3, 4].map((s) => model.layers.filter((l) => new RegExp(`^s${s}u\\d+_add$`).test(l.name)).length);
  assert.deepEqual(units, [3, 6, 6, 3]);
  assert.deepEqual(model.getLayer('s4u3_add').outputShape, [null, 4, 4, 512]);
  model.dispose();
});

test('every residual layer is BN -> ReLU -> conv (full pre-activation), except the very first', () => {
  const model = createResNetV2(PRESETS.resnet20v2);
  const convs = model.layers.filter((l) => /_l\d_conv$/.test(l.name));
  assert.equal(convs.length, 3 * 2 * 3);
  for (const conv of convs) {
    const [before] = inbound(model, conv.name);
    if (conv.name === 's1u1_l1_conv') {
      // The stem's BN -> ReLU serves as this layer's pre-activation.
      assert.equal(before.name, 'stem_relu');
      continue;
    }
    assert.equal(className(before), 'Activation', `${conv.name} follows ${before.name}`);
    assert.equal((before.getConfig() as { activation: string }).activation, 'relu');
    assert.equal(className(inbound(model, before.name)[0]), 'BatchNormalization');
  }
  model.dispose();
});

test('no activation follows an addition: the sum is the unit output', () => {
  const model = createResNetV2(PRESETS.resnet56v2);
  for (const add of model.layers.filter((l) => className(l) === 'Add')) {
    const consumers = add.outboundNodes.map((n) => n.outboundLayer.getClassName());
    assert.ok(consumers.length > 0);
    for (const c of consumers) assert.ok(['BatchNormalization', 'Conv2D', 'Add'].includes(c), `${add.name} feeds ${c}`);
  }
  model.dispose();
});

test('the first unit of a later stack strides its first 1x1 conv and its 1x1 projection', () => {
  const model = createResNetV2(PRESETS.resnet20v2);
  for (const s of [2, 3]) {
    const first = model.getLayer(`s${s}u1_l1_conv`).getConfig() as { strides: number[]; kernelSize: number[] };
    assert.deepEqual(first.strides, [2, 2]);
    assert.deepEqual(first.kernelSize, [1, 1]);
    const middle = model.getLayer(`s${s}u1_l2_conv`).getConfig() as { strides: number[]; kernelSize: number[] };
    assert.deepEqual(middle.strides, [1, 1]);
    assert.deepEqual(middle.kernelSize, [3, 3]);
    const proj = model.getLayer(`s${s}u1_proj`).getConfig() as { strides: number[]; kernelSize: number[] };
    assert.deepEqual(proj.strides, [2, 2]);
    assert.deepEqual(proj.kernelSize, [1, 1]);
    // The projection takes the previous stack's output (the sum), not a pre-activated copy.
    assert.equal(inbound(model, `s${s}u1_proj`)[0].name, `s${s - 1}u2_add`);
    // Later units use identity shortcuts.
    assert.deepEqual(inbound(model, `s${s}u2_add`).map((l) => l.name), [`s${s}u1_add`, `s${s}u2_l3_conv`]);
  }
  assert.deepEqual((model.getLayer('s1u1_proj').getConfig() as { strides: number[] }).strides, [1, 1]);
  model.dispose();
});

test('head is BN -> ReLU -> global average pool -> dense softmax; output has one column per class', () => {
  const model = createResNetV2(PRESETS.resnet20v2);
  assert.deepEqual(model.outputs[0].shape, [null, 10]);
  const dense = model.getLayer('head_dense');
  assert.equal((dense.getConfig() as { activation: string }).activation, 'softmax');
  assert.equal(inbound(model, 'head_dense')[0].getClassName(), 'GlobalAveragePooling2D');
  assert.equal(inbound(model, 'head_gap')[0].name, 'head_relu');
  assert.equal(inbound(model, 'head_relu')[0].name, 'head_bn');
  assert.deepEqual(model.getLayer('s3u2_add').outputShape, [null, 8, 8, 256]);
  const y = model.predict(tf.zeros([2, 32, 32, 3])) as tf.Tensor;
  assert.deepEqual(y.shape, [2, 10]);
  y.dispose();
  model.dispose();
});

test('a stack shortcut adds exactly the projection parameters, and nothing when it is an identity', () => {
  const base = PRESETS.resnet20v2;
  const bridged = counts({ ...base, stackShortcut: true });
  const plain = counts(base);
  // Every stack of resnet20v2 changes shape, so each bridge is a 1x1 projection with bias.
  const projections = [16 * 64 + 64, 64 * 128 + 128, 128 * 256 + 256].reduce((a, b) => a + b);
  assert.equal(bridged.trainable - plain.trainable, projections);
  assert.equal(bridged.total - plain.total, projections);

  const sameShape: ResNetV2Spec = { ...PRESETS.tiny, filters: [8, 8], bottleneck: [4, 4], strides: [1, 1] };
  assert.equal(counts({ ...sameShape, stackShortcut: true }).total - counts(sameShape).total, 4 * 8 + 8);
  const model = createResNetV2({ ...sameShape, stackShortcut: true });
  assert.deepEqual(inbound(model, 's2_bridge_add').map((l) => l.name), ['s1_bridge_add', 's2u1_add']);
  model.dispose();
});

test('bad specs are refused with a message naming the field', () => {
  assert.throws(() => createResNetV2({ ...PRESETS.tiny, units: [] }), /1 to 5 stacks/);
  assert.throws(() => createResNetV2({ ...PRESETS.tiny, units: [1, 1, 1, 1, 1, 1], filters: [1, 1, 1, 1, 1, 1], strides: [1, 1, 1, 1, 1, 1], bottleneck: 0.5 }), /1 to 5 stacks/);
  assert.throws(() => createResNetV2({ ...PRESETS.tiny, filters: [8] }), /filters: 2 entries/);
  assert.throws(() => createResNetV2({ ...PRESETS.tiny, bottleneck: 0.3 as 0.5 }), /0\.5 or 0\.25/);
  assert.throws(() => createResNetV2({ ...PRESETS.tiny, units: [1, 0] }), /units\[1\]/);
});
