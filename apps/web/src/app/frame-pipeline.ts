/**
 * SFrame on a call's encoded frames, where the frames are: in the SFrame worker (behind
 * RTCRtpScriptTransform) or, in browsers without it, on the page (encoded insertable streams).
 * It holds its own {@link CallKeys}, fed with each epoch's export by the page, since the worker
 * cannot reach the MLS group: the keys never leave the page's process, nor go to a log.
 */
import {
  CallKeys,
  createDecryptTransform,
  createEncryptTransform,
  type EncodedFrameLike,
  type EpochSource,
  type FrameEncryptor,
  vp8ClearBytes,
} from '@parley/client';

/**
 * One epoch as the page hands it over: its number, its members in leaf order (the sender
 * indices) and its MLS-Exporter("exporter", "", 32) export, from which {@link CallKeys} derives
 * the SFrame base key; null once this device is out of the group.
 */
export type EpochSnapshot = { epoch: bigint; members: string[]; secrets: Uint8Array[] } | null;

/** Counters of the frames one pipeline handled (the call's test hook and figures). */
export interface PipelineStats {
  /** Frames encrypted and sent. */
  encrypted: number;
  /** Per sending device: frames decrypted, the newest epoch seen, when its first frame came. */
  received: Record<
    string,
    { decrypted: number; epoch: string; firstAt: Record<string, number>; failed: number }
  >;
  /** Frames that came off the wire to be decrypted. */
  arrived: number;
  /** Frames dropped because they did not decrypt (unknown or expired KID, tag, replay). */
  failed: number;
  /** The same frames by the SFrameError code they failed with (what went wrong, no data). */
  failures: Record<string, number>;
  /** Frames a receiver without keys passed on as they came (the test of a page without keys). */
  passedUndecrypted: number;
}

/** The mirror of the MLS epochs the page reads: an {@link EpochSource} for {@link CallKeys}. */
class MirroredEpochs implements EpochSource {
  private snapshot: EpochSnapshot = null;
  private readonly listeners = new Set<() => void>();

  push(snapshot: EpochSnapshot): void {
    this.snapshot = snapshot;
    for (const listener of this.listeners) listener();
  }

  epochSecrets(): Promise<EpochSnapshot> {
    return Promise.resolve(this.snapshot);
  }

  onEpochChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** SFrame encryption and decryption of a call's streams, under keys the page hands over. */
export class FramePipeline {
  private readonly epochs = new MirroredEpochs();
  private keys: Promise<CallKeys> | null = null;
  // Streams may attach before the first epoch arrives: they wait for it.
  private ready!: (keys: Promise<CallKeys>) => void;
  private readonly firstKeys = new Promise<CallKeys>((resolve) => {
    this.ready = resolve;
  });
  readonly stats: PipelineStats = {
    encrypted: 0,
    received: {},
    arrived: 0,
    failed: 0,
    failures: {},
    passedUndecrypted: 0,
  };

  /**
   * @param identity this device's MLS identity (its sender index in each epoch)
   * @param withoutKeys test only: never take keys, and pass received frames on undecrypted
   */
  constructor(
    private readonly identity: string,
    private readonly withoutKeys = false,
  ) {}

  /** A new epoch (or null: out of the group, nothing more decrypts or goes out). */
  setEpoch(snapshot: EpochSnapshot): void {
    if (this.withoutKeys) return;
    this.epochs.push(snapshot);
    if (this.keys === null && snapshot !== null) {
      const keys = CallKeys.open(this.epochs, { identity: this.identity });
      this.keys = keys;
      keys.then(
        () => {
          this.ready(keys);
        },
        // A failed open is retried with the next epoch.
        () => {
          this.keys = null;
        },
      );
    }
  }

  /** Encrypts an outgoing stream (one sender: its own KID context) until it ends. */
  async attachSender(
    readable: ReadableStream<EncodedFrameLike>,
    writable: WritableStream<EncodedFrameLike>,
  ): Promise<void> {
    if (this.withoutKeys) {
      // No keys, nothing goes out: never a frame in the clear.
      await readable.pipeTo(new WritableStream());
      return;
    }
    const encryptor: FrameEncryptor = await (await this.firstKeys).createEncryptor();
    const count = new TransformStream<EncodedFrameLike, EncodedFrameLike>({
      transform: (frame, controller) => {
        this.stats.encrypted++;
        controller.enqueue(frame);
      },
    });
    try {
      await readable
        .pipeThrough(createEncryptTransform(encryptor, { clearBytes: vp8ClearBytes }))
        .pipeThrough(count)
        .pipeTo(writable);
    } finally {
      encryptor.close();
    }
  }

  /** Decrypts an incoming stream of `peer` (a device id) until it ends. */
  async attachReceiver(
    readable: ReadableStream<EncodedFrameLike>,
    writable: WritableStream<EncodedFrameLike>,
    peer: string,
  ): Promise<void> {
    const entry = (this.stats.received[peer] ??= {
      decrypted: 0,
      epoch: '',
      firstAt: {},
      failed: 0,
    });
    if (this.withoutKeys) {
      // The honest test of a page without keys: its decoder gets exactly what came off the wire.
      await readable
        .pipeThrough(
          new TransformStream({
            transform: (frame, controller) => {
              this.stats.passedUndecrypted++;
              controller.enqueue(frame);
            },
          }),
        )
        .pipeTo(writable);
      return;
    }
    const arrive = new TransformStream<EncodedFrameLike, EncodedFrameLike>({
      transform: (frame, controller) => {
        this.stats.arrived++;
        controller.enqueue(frame);
      },
    });
    const decrypt = createDecryptTransform<EncodedFrameLike>(await this.firstKeys, {
      clearBytes: vp8ClearBytes,
      onFrame: (frame) => {
        entry.decrypted++;
        const epoch = frame.epoch.toString();
        entry.epoch = epoch;
        entry.firstAt[epoch] ??= Date.now();
      },
      onError: (error) => {
        this.stats.failed++;
        entry.failed++;
        const code = (error as { code?: unknown }).code;
        const key = typeof code === 'string' ? code : 'OTHER';
        this.stats.failures[key] = (this.stats.failures[key] ?? 0) + 1;
      },
    });
    await readable.pipeThrough(arrive).pipeThrough(decrypt).pipeTo(writable);
  }

  /** Forgets every key. */
  close(): void {
    void this.keys?.then((keys) => {
      keys.close();
    });
    this.keys = null;
  }
}
