import cliProgress from 'cli-progress';

export interface DownloadProgress {
  update(receivedBytes: number): void;
  stop(): void;
}

const MB = 1024 * 1024;
const mb = (bytes: number): string => (bytes / MB).toFixed(1);

/**
 * A live bar on a terminal; on a pipe or log file, where a redrawn bar would be noise, one
 * line per 10% (or per 16 MB when the size is unknown).
 */
export function createDownloadProgress(opts: {
  label: string;
  totalBytes: number | undefined;
  enabled: boolean;
  stream?: NodeJS.WriteStream;
}): DownloadProgress {
  if (!opts.enabled) return { update() {}, stop() {} };
  const stream = opts.stream ?? process.stderr;
  const { label, totalBytes } = opts;

  if (stream.isTTY && totalBytes !== undefined) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: `${label} [{bar}] {percentage}% | {receivedMb}/{totalMb} MB | ETA {eta_formatted}`,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(totalBytes, 0, { receivedMb: mb(0), totalMb: mb(totalBytes) });
    return {
      update: (received) => bar.update(received, { receivedMb: mb(received) }),
      stop: () => bar.stop(),
    };
  }

  let nextMark = 0;
  return {
    update(received) {
      if (totalBytes !== undefined && totalBytes > 0) {
        const percent = Math.floor((received / totalBytes) * 100);
        if (percent >= nextMark) {
          stream.write(`${label}: ${percent}% (${mb(received)} of ${mb(totalBytes)} MB)\n`);
          nextMark = Math.floor(percent / 10) * 10 + 10;
        }
      } else if (received >= nextMark) {
        stream.write(`${label}: ${mb(received)} MB\n`);
        nextMark = received + 16 * MB;
      }
    },
    stop() {},
  };
}
