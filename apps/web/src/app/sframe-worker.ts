/**
 * The call's SFrame worker: every encoded audio and video frame of the page's peer connections
 * passes here (RTCRtpScriptTransform), encrypted on the way out and decrypted on the way in,
 * off the page's main thread. The page posts it each epoch's export (never logged); it answers
 * requests for its counters.
 */
import type { EncodedFrameLike } from '@parley/client';
import { type EpochSnapshot, FramePipeline } from './frame-pipeline.js';

/** What the page posts to the worker. */
export type ToWorker =
  | { type: 'init'; identity: string; withoutKeys: boolean }
  | { type: 'epoch'; snapshot: EpochSnapshot }
  | { type: 'stats'; id: number }
  | { type: 'close' };

/** What a transform's options say (the second argument of RTCRtpScriptTransform). */
export interface TransformOptions {
  readonly role: 'send' | 'receive';
  /** The sending device of a received stream. */
  readonly peer: string;
}

// The worker's globals, as far as used here (lib.webworker cannot be mixed with lib.dom).
interface RtcTransformEvent {
  readonly transformer: {
    readonly readable: ReadableStream<EncodedFrameLike>;
    readonly writable: WritableStream<EncodedFrameLike>;
    readonly options: TransformOptions;
  };
}
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  onrtctransform: ((event: RtcTransformEvent) => void) | null;
  postMessage(message: unknown): void;
};

let pipeline: FramePipeline | null = null;
// Transforms that came before 'init' (the page posts it first; this is a guard).
const waiting: RtcTransformEvent[] = [];

function attach({ transformer }: RtcTransformEvent, to: FramePipeline): void {
  const { readable, writable, options } = transformer;
  const done =
    options.role === 'send'
      ? to.attachSender(readable, writable)
      : to.attachReceiver(readable, writable, options.peer);
  // A stream ends when its connection closes: nothing to report.
  done.catch(() => undefined);
}

scope.onrtctransform = (event) => {
  if (pipeline === null) waiting.push(event);
  else attach(event, pipeline);
};

scope.onmessage = ({ data }) => {
  switch (data.type) {
    case 'init':
      pipeline = new FramePipeline(data.identity, data.withoutKeys);
      for (const event of waiting.splice(0)) attach(event, pipeline);
      break;
    case 'epoch':
      pipeline?.setEpoch(data.snapshot);
      break;
    case 'stats':
      scope.postMessage({ type: 'stats', id: data.id, stats: pipeline?.stats ?? null });
      break;
    case 'close':
      pipeline?.close();
      pipeline = null;
      break;
  }
};
