/**
 * SFrame on WebRTC encoded frames: TransformStreams that encrypt what an RTCRtpSender's encoder
 * produces and decrypt what an RTCRtpReceiver hands its decoder. They take any object with a
 * `data: ArrayBuffer` (RTCEncodedAudioFrame, RTCEncodedVideoFrame) and replace `data`, so they
 * fit encoded insertable streams (`sender.createEncodedStreams()`) as they are, and an
 * RTCRtpScriptTransform worker that holds the keys. Wiring them into a page is the app's part.
 */
import type { CallKeys, DecryptedMediaFrame, FrameEncryptor } from './call-keys.js';

/** What the transforms need of an encoded frame (RTCEncodedAudioFrame, RTCEncodedVideoFrame). */
export interface EncodedFrameLike {
  data: ArrayBuffer;
  /** RTCEncodedVideoFrame's `key` or `delta`; absent on audio frames. */
  readonly type?: string;
}

/** Options of the transforms. */
export interface FrameTransformOptions<T extends EncodedFrameLike = EncodedFrameLike> {
  /**
   * Told of each frame that could not be encrypted or decrypted (an SFrameError); the frame is
   * dropped, never passed on in the clear or undecrypted.
   */
  readonly onError?: (error: unknown) => void;
  /**
   * How many leading bytes of a frame stay in the clear, authenticated as the SFrame metadata
   * (a changed byte fails the frame) but not encrypted: none by default. Browsers need
   * {@link vp8ClearBytes} for VP8 video (see there). Both ends must use the same rule.
   */
  readonly clearBytes?: (frame: T) => number;
}

/**
 * The VP8 payload header, left in the clear: 10 bytes of a key frame (frame tag, start code,
 * dimensions), 3 of a delta frame (frame tag), none of audio. Chromium's VP8 depacketizer reads
 * them from each received frame before any transform runs (key frame or not, the size), and
 * decodes nothing when they are encrypted (measured on Chromium 156); Jitsi and WebRTC's own
 * end-to-end sample keep the same bytes. They say what an RTP observer learns anyway (key frames
 * are larger, the size shows in the first one); the picture stays encrypted.
 */
export function vp8ClearBytes(frame: EncodedFrameLike): number {
  if (frame.type === 'key') return 10;
  if (frame.type === 'delta') return 3;
  return 0;
}

/**
 * Encrypts every encoded frame with `encryptor` (one per outgoing stream); a frame that cannot
 * be encrypted is dropped, never sent in the clear.
 */
export function createEncryptTransform<T extends EncodedFrameLike>(
  encryptor: FrameEncryptor,
  options: FrameTransformOptions<T> = {},
): TransformStream<T, T> {
  return new TransformStream<T, T>({
    async transform(frame, controller) {
      try {
        const data = new Uint8Array(frame.data);
        const clear = Math.min(options.clearBytes?.(frame) ?? 0, data.length);
        const head = data.slice(0, clear);
        const encrypted = await encryptor.encrypt(data.slice(clear), head);
        frame.data = concat(head, encrypted);
        controller.enqueue(frame);
      } catch (error) {
        options.onError?.(error);
      }
    },
  });
}

/**
 * Decrypts every encoded frame with the call's keys; a frame that does not decrypt (unknown or
 * expired KID, wrong tag, replay) is dropped, so the decoder never sees ciphertext.
 * `onFrame` hears who sent each frame that passed.
 */
export function createDecryptTransform<T extends EncodedFrameLike>(
  keys: Pick<CallKeys, 'decrypt'>,
  options: FrameTransformOptions<T> & { onFrame?: (frame: DecryptedMediaFrame) => void } = {},
): TransformStream<T, T> {
  return new TransformStream<T, T>({
    async transform(frame, controller) {
      try {
        const data = new Uint8Array(frame.data);
        const clear = Math.min(options.clearBytes?.(frame) ?? 0, data.length);
        const head = data.slice(0, clear);
        const decrypted = await keys.decrypt(data.slice(clear), head);
        frame.data = concat(head, decrypted.plaintext);
        options.onFrame?.(decrypted);
        controller.enqueue(frame);
      } catch (error) {
        options.onError?.(error);
      }
    },
  });
}

/** `head ‖ body` in a new ArrayBuffer (the frame's own may be shared, or too short). */
function concat(head: Uint8Array, body: Uint8Array): ArrayBuffer {
  const joined = new Uint8Array(head.length + body.length);
  joined.set(head);
  joined.set(body, head.length);
  return joined.buffer;
}
