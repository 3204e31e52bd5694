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
}

/** Options of the transforms. */
export interface FrameTransformOptions {
  /**
   * Told of each frame that could not be encrypted or decrypted (an SFrameError); the frame is
   * dropped, never passed on in the clear or undecrypted.
   */
  readonly onError?: (error: unknown) => void;
}

/**
 * Encrypts every encoded frame with `encryptor` (one per outgoing stream); a frame that cannot
 * be encrypted is dropped, never sent in the clear.
 */
export function createEncryptTransform<T extends EncodedFrameLike>(
  encryptor: FrameEncryptor,
  options: FrameTransformOptions = {},
): TransformStream<T, T> {
  return new TransformStream<T, T>({
    async transform(frame, controller) {
      try {
        const encrypted = await encryptor.encrypt(new Uint8Array(frame.data));
        frame.data = toArrayBuffer(encrypted);
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
  keys: CallKeys,
  options: FrameTransformOptions & { onFrame?: (frame: DecryptedMediaFrame) => void } = {},
): TransformStream<T, T> {
  return new TransformStream<T, T>({
    async transform(frame, controller) {
      try {
        const decrypted = await keys.decrypt(new Uint8Array(frame.data));
        frame.data = toArrayBuffer(decrypted.plaintext);
        options.onFrame?.(decrypted);
        controller.enqueue(frame);
      } catch (error) {
        options.onError?.(error);
      }
    },
  });
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy.buffer;
}
