// A one-line progress bar with throughput and ETA, on stderr, only when stderr is a terminal
// (quiet in scripts, cron and CI logs). Redrawn at most 10 times a second.
export interface Bar { update(done: number, total: number, label?: string): void; done(): void }

const WIDTH = 30;

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function fmtRate(bytesPerSec: number): string {
  return `${(bytesPerSec / 1e6).toFixed(1)} MB/s`;
}

export function progressBar(stream: NodeJS.WriteStream = process.stderr, opts: { units?: 'bytes' | 'count'; force?: boolean } = {}): Bar {
  const tty = opts.force ?? Boolean(stream.isTTY);
  const t0 = performance.now();
  let last = 0;
  let lastLabel = '';
  let drawn = false;
  const draw = (done: number, total: number, label: string): void => {
    const secs = (performance.now() - t0) / 1000;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const fill = Math.round(frac * WIDTH);
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? `ETA ${Math.ceil((total - done) / rate)}s` : '';
    const amount = opts.units === 'count' ? `${done}/${total}` : `${fmtBytes(done)}/${fmtBytes(total)} ${fmtRate(rate)}`;
    const line = `${label.padEnd(7)} [${'#'.repeat(fill)}${' '.repeat(WIDTH - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${amount} ${eta}`;
    stream.write(`\r${line}\x1b[K`);
    drawn = true;
  };
  return {
    update(done, total, label = '') {
      if (!tty) return;
      const now = performance.now();
      if (label !== lastLabel && drawn) stream.write('\n');
      if (label === lastLabel && now - last < 100 && done < total) return;
      last = now;
      lastLabel = label;
      draw(done, total, label);
    },
    done() {
      if (tty && drawn) stream.write('\n');
      drawn = false;
    },
  };
}
