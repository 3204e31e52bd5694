import { createInterface, type Interface } from 'node:readline';

/** A printed line that can be rewritten in place (a message going from pending to sent). */
export interface LineHandle {
  update(text: string): void;
}

/** What `chat` draws on: lines above the input, and the input itself. */
export interface Screen {
  /** Whether lines can be rewritten in place (a terminal). */
  readonly live: boolean;
  /** Prints a line above what the user is typing. */
  line(text: string, stream?: 'stdout' | 'stderr'): void;
  /** Prints a line that `update` may rewrite later (same width), or a new line where it cannot. */
  mutable(text: string): LineHandle;
  /**
   * A transient status ("ben is typing…") next to the prompt, or none; shown on a terminal
   * only — through a pipe it would be noise in a transcript.
   */
  status(text: string | null): void;
  /** Stops reading input and gives the terminal back. */
  close(): void;
}

/** Callbacks of the input side. */
export interface InputEvents {
  line(text: string): void;
  /** Ctrl-D on an empty line, or the end of a piped stdin. */
  end(): void;
  /** Ctrl-C typed on the terminal (raw mode: it arrives as a key, not as SIGINT). */
  interrupt(): void;
  /** A key typed on the terminal (not Enter): the user is typing. Never called for a pipe. */
  typing?(): void;
}

// Printable width of a string (the lines are ASCII and a few symbols: length is close enough).
// eslint-disable-next-line @typescript-eslint/no-misused-spread -- code points suffice here
const width = (text: string) => [...text].length;

/**
 * A terminal: readline owns the input line (with a `> ` prompt, in raw mode, so it echoes what
 * is typed itself); lines are printed above it, and pending lines are rewritten in place by
 * moving the cursor up to them.
 */
class TerminalScreen implements Screen {
  readonly live = true;
  private readonly input: Interface;
  // Rows printed above the prompt since the start: a handle remembers where its line began.
  private rows = 0;
  private closed = false;
  private readonly out = process.stdout;

  constructor(events: InputEvents) {
    this.input = createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: true,
      prompt: '> ',
    });
    this.input.on('line', (typed) => {
      // readline leaves the typed line on screen; chat shows it as a `me:` line instead.
      const typedRows = Math.max(1, Math.ceil(width(`> ${typed}`) / this.columns()));
      this.out.write(`\x1b[${typedRows}A\r\x1b[J`);
      events.line(typed);
      if (!this.closed) this.input.prompt();
    });
    this.input.on('close', () => {
      if (!this.closed) events.end();
    });
    this.input.on('SIGINT', () => {
      events.interrupt();
    });
    // readline emits keypress events on a terminal's input stream.
    process.stdin.on('keypress', this.onKeypress);
    this.typing = () => {
      events.typing?.();
    };
    this.input.prompt();
  }

  private readonly typing: () => void;

  private readonly onKeypress = (_text: unknown, key: { name?: string } | undefined) => {
    if (this.closed || key?.name === 'return' || key?.name === 'enter') return;
    this.typing();
  };

  status(text: string | null): void {
    if (this.closed) return;
    // In the prompt itself: drawn and cleared with it, never across what is being typed.
    this.input.setPrompt(text === null ? '> ' : `(${text}) > `);
    this.input.prompt(true);
  }

  private columns(): number {
    return this.out.columns > 0 ? this.out.columns : Number.POSITIVE_INFINITY;
  }

  private height(text: string): number {
    return Math.max(1, Math.ceil(width(text) / this.columns()));
  }

  line(text: string, stream: 'stdout' | 'stderr' = 'stdout'): void {
    if (this.closed) {
      (stream === 'stdout' ? process.stdout : process.stderr).write(`${text}\n`);
      return;
    }
    // Up to where the prompt starts, clear it, print, and let readline draw the prompt again.
    const inputRows = this.input.getCursorPos().rows;
    if (inputRows > 0) this.out.write(`\x1b[${inputRows}A`);
    this.out.write('\r\x1b[J');
    (stream === 'stdout' ? process.stdout : process.stderr).write(`${text}\n`);
    this.rows += this.height(text);
    // readline's redraw moves up as many rows as the cursor was into the input: give it those.
    this.out.write('\n'.repeat(inputRows));
    this.input.prompt(true);
  }

  mutable(text: string): LineHandle {
    const start = this.rows;
    const height = this.height(text);
    this.line(text);
    return {
      update: (next) => {
        const up = this.rows - start + this.input.getCursorPos().rows;
        const screenRows = this.out.rows > 0 ? this.out.rows : Number.POSITIVE_INFINITY;
        if (this.closed || up >= screenRows - 1 || this.height(next) !== height) {
          // Scrolled away (or no longer the same shape): say it on a new line.
          this.line(next);
          return;
        }
        // Save the cursor, go up to the line, overwrite it (same width), come back.
        this.out.write(`\x1b7\x1b[${up}A\r${next}\x1b8`);
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.stdin.off('keypress', this.onKeypress);
    this.out.write('\r\x1b[J');
    this.input.close();
  }
}

/** Not a terminal (a pipe, a file, --json): one line per event, input read line by line. */
class PlainScreen implements Screen {
  readonly live = false;
  private readonly input: Interface;
  private closed = false;

  constructor(events: InputEvents) {
    this.input = createInterface({ input: process.stdin, terminal: false });
    this.input.on('line', (typed) => {
      events.line(typed);
    });
    this.input.on('close', () => {
      if (!this.closed) events.end();
    });
  }

  line(text: string, stream: 'stdout' | 'stderr' = 'stdout'): void {
    (stream === 'stdout' ? process.stdout : process.stderr).write(`${text}\n`);
  }

  mutable(text: string): LineHandle {
    this.line(text);
    return {
      update: (next) => {
        this.line(next);
      },
    };
  }

  status(): void {
    // Nothing through a pipe: a transient line has no place in a transcript.
  }

  close(): void {
    this.closed = true;
    this.input.close();
    // readline leaves stdin flowing; paused, it holds the process no more.
    process.stdin.pause();
  }
}

/** A terminal screen when both stdin and stdout are terminals (and not --json), else plain. */
export function openScreen(events: InputEvents, json: boolean): Screen {
  return !json && process.stdin.isTTY && process.stdout.isTTY
    ? new TerminalScreen(events)
    : new PlainScreen(events);
}
