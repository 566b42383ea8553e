import { CIFAR10, type Cifar10Split } from './cifar10.js';

/**
 * Splits the bytes of one CIFAR-10 batch file into labels and pixels. Validation is strict
 * because a truncated download or a wrong file would otherwise train silently on garbage.
 */
export function parseCifar10Records(bytes: Uint8Array, fileName: string): Cifar10Split {
  const { recordBytes, imageBytes, classes } = CIFAR10;
  if (bytes.length === 0) {
    throw new Error(`${fileName}: the file is empty; expected CIFAR-10 records of ${recordBytes} bytes`);
  }
  const remainder = bytes.length % recordBytes;
  if (remainder !== 0) {
    const whole = Math.floor(bytes.length / recordBytes);
    throw new Error(
      `${fileName}: size ${bytes.length} bytes is not a multiple of the ${recordBytes}-byte CIFAR-10 record ` +
        `(${whole} whole records, then a last record ${recordBytes - remainder} bytes short); ` +
        `the file is truncated or is not a CIFAR-10 binary batch`,
    );
  }
  const count = bytes.length / recordBytes;
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * imageBytes);
  for (let i = 0; i < count; i++) {
    const at = i * recordBytes;
    const label = bytes[at];
    if (label >= classes) {
      throw new Error(
        `${fileName}: record ${i} has label ${label}, expected 0..${classes - 1}; the file is corrupt or not CIFAR-10`,
      );
    }
    labels[i] = label;
    pixels.set(bytes.subarray(at + 1, at + recordBytes), i * imageBytes);
  }
  return { count, labels, pixels };
}
