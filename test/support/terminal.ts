import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Every descendant of `pid`, deepest first (Linux /proc). */
function descendantsOf(pid: number): number[] {
  let children: number[];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((text) => text !== '')
      .map(Number);
  } catch {
    return [];
  }
  return children.flatMap((child) => [...descendantsOf(child), child]);
}

/** `'…'` for sh -c, whatever the text holds. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

// Terminal control sequences (CSI …, ESC 7/8, OSC …) out of the way of assertions on text.
// eslint-disable-next-line no-control-regex
const CONTROL = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[78=>]|\r/g;

/** Output with the terminal's control sequences and carriage returns taken out. */
export function plain(output: string): string {
  return output.replace(CONTROL, '');
}

/**
 * A program run on a pseudo-terminal: util-linux `script` gives it one (`isTTY` true on stdin and
 * stdout, raw mode and echo as a terminal has them), and forwards what the test writes to its
 * stdin as typed keys. Ctrl-C is `\x03`, Ctrl-D `\x04`. Closing our end of stdin sends the
 * program an end of file, so it stays open until `close()`.
 */
export class Terminal {
  /** Everything the program wrote (stdout and stderr mixed, as on a screen), raw. */
  output = '';
  /** The exit code once it exited (the program's own: `script -e`). */
  code: number | null = null;
  readonly started = Date.now();
  /** When it exited (ms since the epoch). */
  endedAt: number | null = null;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly exited: Promise<number>;

  constructor(
    private readonly command: string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn('script', ['-qfec', command.map(shellQuote).join(' '), '/dev/null'], {
      env,
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      this.output += chunk;
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => {
      this.output += chunk;
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.code = code ?? (signal === null ? -1 : 128);
        this.endedAt = Date.now();
        resolve(this.code);
      });
    });
  }

  /** The output without control sequences. */
  get text(): string {
    return plain(this.output);
  }

  /** The screen a person would see now (see {@link screen}). */
  get screen(): string[] {
    return screen(this.output);
  }

  /** Types `keys` (a line needs its `\r`, as Enter sends). */
  type(keys: string): void {
    this.child.stdin.write(keys);
  }

  /** Ends stdin: the program reads an end of file. */
  close(): void {
    this.child.stdin.end();
  }

  /** Waits until the plain output matches, or fails with what was written so far. */
  async waitFor(expected: string | RegExp, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const found = () =>
      typeof expected === 'string' ? this.text.includes(expected) : expected.test(this.text);
    while (!found()) {
      if (this.code !== null && !found())
        throw new Error(`exited (${this.code}) without ${String(expected)}:\n${this.text}`);
      if (Date.now() > deadline)
        throw new Error(`no ${String(expected)} within ${timeoutMs} ms:\n${this.text}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * The exit code, waiting up to `timeoutMs`; a program still running then is killed and the
   * wait fails (a hang is the failure).
   */
  async exit(timeoutMs: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => {
        resolve('timeout');
      }, timeoutMs);
    });
    const outcome = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.kill();
      throw new Error(
        `${this.command.slice(2).join(' ')} still running after ${timeoutMs} ms:\n${this.text}`,
      );
    }
    return outcome;
  }

  /**
   * Kills the program and script for good. script runs the program in a session of its own, so
   * the program is found among script's children and killed first (else it would live on,
   * holding its profile's lock).
   */
  kill(): void {
    if (this.code !== null || this.child.pid === undefined) return;
    for (const pid of descendantsOf(this.child.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
    this.child.kill('SIGKILL');
  }
}

/**
 * What a terminal of unlimited width would show after `output`: the few control sequences
 * readline and parley use (cursor up/down/column, clear line and below, save/restore) are
 * applied, so that a test sees the screen a person sees, not the keystrokes that made it.
 */
export function screen(output: string): string[] {
  const rows: string[] = [''];
  let row = 0;
  let column = 0;
  let saved = { row: 0, column: 0 };
  const put = (char: string) => {
    const line = rows[row] ?? '';
    rows[row] = line.padEnd(column).slice(0, column) + char + line.slice(column + 1);
    column += 1;
  };
  for (let i = 0; i < output.length; i += 1) {
    const char = output[i] ?? '';
    if (char === '\x1b') {
      const rest = output.slice(i + 1);
      if (rest.startsWith('7')) {
        saved = { row, column };
        i += 1;
        continue;
      }
      if (rest.startsWith('8')) {
        ({ row, column } = saved);
        i += 1;
        continue;
      }
      const csi = /^\[([0-9;?]*)([ -/]*[@-~])/.exec(rest);
      if (csi === null) continue;
      i += csi[0].length;
      const n = Number.parseInt(csi[1] ?? '', 10);
      const count = Number.isNaN(n) ? 1 : n;
      switch (csi[2]) {
        case 'A':
          row = Math.max(0, row - count);
          break;
        case 'B':
          row += count;
          break;
        case 'C':
          column += count;
          break;
        case 'D':
          column = Math.max(0, column - count);
          break;
        case 'G':
          column = count - 1;
          break;
        case 'K':
          rows[row] = (csi[1] ?? '') === '2' ? '' : (rows[row] ?? '').slice(0, column);
          break;
        case 'J':
          rows[row] = (rows[row] ?? '').slice(0, column);
          rows.splice(row + 1);
          break;
        case undefined:
        default:
          break;
      }
      while (rows.length <= row) rows.push('');
      continue;
    }
    if (char === '\r') column = 0;
    else if (char === '\n') {
      row += 1;
      column = 0;
      while (rows.length <= row) rows.push('');
    } else if (char >= ' ' || char === '\t') put(char);
  }
  return rows.map((line) => line.trimEnd());
}
