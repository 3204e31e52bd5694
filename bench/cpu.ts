/**
 * CPU time by thread and process, read from /proc (Linux): Node 20 has no per-thread CPU clock,
 * and the server and the load generator share one process here, on separate threads.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** utime + stime in ms from a /proc/…/stat file; NaN if it cannot be read. */
function statCpuMs(path: string): number {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return Number.NaN;
  }
  // The command name is in parentheses and may hold spaces: count fields after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks();
}

/** CPU time of the calling thread (10 ms resolution). */
export function threadCpuMs(): number {
  return statCpuMs('/proc/thread-self/stat');
}

/** CPU time of the whole process, every thread included (µs resolution). */
export function processCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** CPU time of other processes (PostgreSQL backends), summed; missing ones count as 0. */
export function processesCpuMs(pids: number[]): Map<number, number> {
  return new Map(
    pids.map((pid) => {
      const ms = statCpuMs(`/proc/${pid}/stat`);
      return [pid, Number.isNaN(ms) ? 0 : ms];
    }),
  );
}

/** CPU spent by processes between two readings (new ones counted from 0). */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}

/** Busy CPU time of the whole machine (every core, idle and iowait excluded), in ms. */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  const ticks = [user, nice, system, irq, softirq, steal].reduce<number>(
    (sum, value) => sum + (value ?? 0),
    0,
  );
  return (ticks * 1000) / clockTicks();
}

/** CPU time of every PostgreSQL process on the machine (backends and background workers). */
export function postgresCpuMs(): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const name = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
    if (name !== 'postgres') continue;
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    total += ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks();
  }
  return total;
}

/** A reading of who used the machine's CPU: everyone, this process, PostgreSQL. */
export interface MachineReading {
  at: number;
  busy: number;
  own: number;
  postgres: number;
}

/** Takes a reading now. */
export function readMachine(): MachineReading {
  return {
    at: performance.now(),
    busy: machineBusyMs(),
    own: processCpuMs(),
    postgres: postgresCpuMs(),
  };
}

/**
 * Cores used by everything but this process and PostgreSQL between two readings: other work
 * on a shared machine, which the figures of that interval then suffer from.
 */
export function otherCores(before: MachineReading, after: MachineReading): number {
  const other =
    after.busy - before.busy - (after.own - before.own) - (after.postgres - before.postgres);
  return Math.max(0, other) / (after.at - before.at);
}

/**
 * Waits until other processes use less than `maxCores` over one second (at most `timeoutMs`);
 * returns how long it waited. The machine may be shared: a run next to a busy neighbour
 * measures the neighbour.
 */
export async function waitForQuiet(maxCores: number, timeoutMs: number): Promise<number> {
  const start = performance.now();
  for (;;) {
    const before = readMachine();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (otherCores(before, readMachine()) < maxCores) return performance.now() - start;
    if (performance.now() - start > timeoutMs) return performance.now() - start;
  }
}
