import * as tf from '@tensorflow/tfjs';

/**
 * Runs one forward/backward pass of a tiny conv -> BatchNorm -> ReLU -> strided conv ->
 * dense net on the current backend and checks the gradients are finite and not all zero.
 * It exercises the kernels a ResNet training step needs (among them the conv filter and
 * input gradients), so a backend that lacks one is refused at start-up.
 */
export async function checkTrainingStep(label: string): Promise<void> {
  const result = tf.tidy(() => {
    const x = tf.randomNormal([4, 8, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const w1 = tf.randomNormal([3, 3, 3, 4], 0, 0.3, 'float32', 2) as tf.Tensor4D;
    const w2 = tf.randomNormal([1, 1, 4, 8], 0, 0.3, 'float32', 3) as tf.Tensor4D;
    const w3 = tf.randomNormal([8, 10], 0, 0.3, 'float32', 4) as tf.Tensor2D;
    const labels = tf.oneHot(tf.tensor1d([1, 2, 3, 4], 'int32'), 10);
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
      let h: tf.Tensor = tf.conv2d(x, a as tf.Tensor4D, 1, 'same');
      const { mean, variance } = tf.moments(h, [0, 1, 2]);
      h = tf.relu(tf.mul(tf.sub(h, mean), tf.rsqrt(tf.add(variance, 1e-3))));
      h = tf.conv2d(h as tf.Tensor4D, b as tf.Tensor4D, 2, 'same');
      const logits = tf.matMul(tf.mean(h, [1, 2]) as tf.Tensor2D, c as tf.Tensor2D);
      return tf.sum(tf.mul(labels, tf.neg(tf.logSoftmax(logits))));
    })([w1, w2, w3]);
    return tf.stack(grads.map((g) => tf.sum(tf.abs(g))));
  });
  const sums = await result.data();
  result.dispose();
  if (!sums.every((s) => Number.isFinite(s) && s > 0)) {
    throw new Error(`a test training step on ${label} gave bad gradients (${Array.from(sums).join(', ')})`);
  }
}
