/** Facts about the CIFAR-10 binary version (https://www.cs.toronto.edu/~kriz/cifar.html). */
export const CIFAR10 = {
  imageSize: 32,
  channels: 3,
  imageBytes: 3072,
  /** One label byte, then the image. */
  recordBytes: 3073,
  classes: 10,
  trainFiles: [
    'data_batch_1.bin',
    'data_batch_2.bin',
    'data_batch_3.bin',
    'data_batch_4.bin',
    'data_batch_5.bin',
  ],
  testFile: 'test_batch.bin',
  classNames: [
    'airplane',
    'automobile',
    'bird',
    'cat',
    'deer',
    'dog',
    'frog',
    'horse',
    'ship',
    'truck',
  ],
  archiveUrl: 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
  archiveMd5: 'c32a1d4ab5d03f1284b67883e8d87530',
} as const;

/** Every file a complete dataset directory must hold, training files first. */
export const CIFAR10_FILES: readonly string[] = [...CIFAR10.trainFiles, CIFAR10.testFile];

export interface Cifar10Split {
  count: number;
  /** One class index 0..9 per example. */
  labels: Uint8Array;
  /**
   * count * 3072 bytes in file order: per image the R plane, then G, then B, each 32x32
   * row-major. Kept planar (as stored) so loading is a copy and shards stay compact.
   */
  pixels: Uint8Array;
}

export interface Cifar10 {
  train: Cifar10Split;
  test: Cifar10Split;
}
