/**
 * Calls in the page: a WebRTC mesh (one RTCPeerConnection per other participant) whose every
 * encoded audio and video frame is SFrame-encrypted with keys from the conversation's MLS epoch.
 *
 * Why a mesh: there is no media server to run, and up to the server's 8 participants each one
 * sends its streams to at most 7 others. Each sender encrypts a frame once, with its own SFrame
 * key (its KID names its place in the group and the epoch), and sends the same ciphertext on
 * every connection, so that a future SFU could forward it without being able to read it.
 *
 * Signalling (SDP offers/answers, ICE candidates) goes through client.calls.sendSignal/onSignal:
 * ephemeral MLS application messages, end to end encrypted. Glare is avoided by one rule: of two
 * participants, the one with the smaller device id offers.
 */
import {
  type CallEventInfo,
  type CallInfo,
  type CallMedia,
  type CallSignal,
  type Conversation,
  type EncodedFrameLike,
  GENERIC_EXPORT_LENGTH,
  GENERIC_EXPORTER_LABEL,
  type IceServer,
  type ParleyClient,
  securityCode,
} from '@parley/client';
import { type EpochSnapshot, FramePipeline, type PipelineStats } from './frame-pipeline.js';
import type { ToWorker, TransformOptions } from './sframe-worker.js';

/**
 * Signals are best effort (an ephemeral MLS message that does not decrypt is dropped, measured:
 * a few of a burst of candidates, or an answer, when a third joins): a connection the offerer
 * does not see connected this long after its offer is offered again with an ICE restart (new
 * candidates), up to {@link MAX_OFFERS} offers in all.
 */
const REOFFER_AFTER_MS = 8_000;
const MAX_OFFERS = 4;

/** How encoded frames reach the SFrame code in this browser (null: they cannot, no calls). */
export type TransformKind = 'script-transform' | 'insertable-streams';

/**
 * Test switches, set on `globalThis.parleyCallTest` before a call starts (the browser suite sets
 * them through the DevTools protocol; nothing in the page does).
 */
interface CallTestSwitches {
  /** Take no keys: received frames go to the decoder as they came off the wire. */
  withoutKeys?: boolean;
  /**
   * Keep connections to participants who left or were removed, and this page's own when it is
   * dropped from the call: it still says why and stops its camera and microphone (sends nothing
   * more), but keeps receiving, so that the suite sees what its decoder gets after the rekey.
   */
  keepPeers?: boolean;
  /** Use encoded insertable streams even where RTCRtpScriptTransform exists. */
  insertableStreams?: boolean;
  /** Ignore the first answer that comes (a lost signal: the offerer must offer again). */
  loseFirstAnswer?: boolean;
}

function testSwitches(): CallTestSwitches {
  return (globalThis as { parleyCallTest?: CallTestSwitches }).parleyCallTest ?? {};
}

/** The transform this browser offers, if any (script transform preferred: off the main thread). */
export function transformKind(): TransformKind | null {
  const scriptTransform = typeof RTCRtpScriptTransform !== 'undefined';
  const insertable =
    typeof RTCRtpSender !== 'undefined' && 'createEncodedStreams' in RTCRtpSender.prototype;
  if (scriptTransform && !(testSwitches().insertableStreams === true && insertable)) {
    return 'script-transform';
  }
  return insertable ? 'insertable-streams' : null;
}

interface EncodedStreams {
  readable: ReadableStream<EncodedFrameLike>;
  writable: WritableStream<EncodedFrameLike>;
}
type WithEncodedStreams = { createEncodedStreams(): EncodedStreams };

/** One other participant: the connection to it and what it sends. */
export interface Peer {
  readonly deviceId: string;
  readonly userId: string;
  readonly connection: RTCPeerConnection;
  readonly stream: MediaStream;
  /** ICE candidates that came before the remote description. */
  readonly pending: RTCIceCandidateInit[];
  /** When its first video (or, audio only, audio) frame was decoded here (ms since the epoch). */
  firstFrameAt: number | null;
}

/** What the figures and the browser suite read of a call (no key material). */
export interface CallStatsSnapshot {
  callId: string;
  /** This page's device. */
  deviceId: string;
  transform: TransformKind;
  epoch: string;
  securityCode: string;
  startedAt: number;
  /** When this page posted each epoch's keys to the transform (ms since the epoch). */
  rekeyAt: Record<string, number>;
  /** Why the call is over for this page, and since when (ms since the epoch); null while on. */
  ended: string | null;
  endedAt: number | null;
  /** The participants' devices, as the server last said. */
  participants: string[];
  /** Signals sent to and received from each other device, by kind (offer, answer, candidate). */
  signals: Record<string, { sent: Record<string, number>; received: Record<string, number> }>;
  pipeline: PipelineStats | null;
  peers: Record<
    string,
    {
      userId: string;
      connection: string;
      firstFrameAt: number | null;
      framesDecoded: number;
      videoPackets: number;
      audioPackets: number;
      audioSamples: number;
    }
  >;
}

/** A call this page is in: local media, the mesh, the SFrame transform and its keys. */
export class CallSession {
  readonly peers = new Map<string, Peer>();
  local: MediaStream | null = null;
  muted = false;
  cameraOff = false;
  securityCode = '';
  epoch = -1n;
  /** Why the call is over for this page, once it is. */
  ended: string | null = null;
  /** When it ended for this page (ms since the epoch). */
  endedAt: number | null = null;
  call: CallInfo | null = null;
  readonly startedAt = Date.now();
  private readonly rekeyAt: Record<string, number> = {};
  private worker: Worker | null = null;
  private pipeline: FramePipeline | null = null;
  private iceServers: IceServer[] = [];
  private unsubscribe: (() => void)[] = [];
  private statsRequests = 0;
  private readonly statsWaiting = new Map<number, (stats: PipelineStats | null) => void>();
  private readonly switches = testSwitches();
  private framePoll: ReturnType<typeof setInterval> | null = null;
  private readonly protectedReceivers = new WeakSet<RTCRtpReceiver>();
  /**
   * ICE candidates from a device whose offer has not come yet: its candidates are gathered (and
   * sent) while the offer itself is still on its way, and signals may overtake one another.
   */
  private readonly early = new Map<string, RTCIceCandidateInit[]>();
  /** Signals that came before the server answered start() or join(). */
  private readonly earlySignals: CallSignal[] = [];
  /** Signals sent to and received from each participant, by kind (for the stats). */
  private readonly signals: CallStatsSnapshot['signals'] = {};
  private lostAnswer = false;

  private constructor(
    private readonly client: ParleyClient,
    readonly conversation: Conversation,
    readonly media: CallMedia,
    readonly transform: TransformKind,
    private readonly changed: () => void,
  ) {}

  /**
   * Opens the camera and microphone, the SFrame transform and its keys, then starts a call in
   * the conversation (no callId) or joins one. Throws a readable Error when it cannot.
   */
  static async open(
    client: ParleyClient,
    conversation: Conversation,
    media: CallMedia,
    callId: string | null,
    changed: () => void,
  ): Promise<CallSession> {
    const transform = transformKind();
    if (transform === null) {
      throw new Error(
        'This browser cannot encrypt call media (it has no WebRTC encoded transform), so it cannot join calls.',
      );
    }
    const session = new CallSession(client, conversation, media, transform, changed);
    try {
      await session.prepare();
      session.call =
        callId === null
          ? await client.calls.start(conversation.id, media)
          : await client.calls.join(callId);
      session.connectAll();
      session.replayEarlySignals();
    } catch (error) {
      session.close();
      throw error;
    }
    session.changed();
    return session;
  }

  /** The call's id (known once started or joined). */
  get id(): string {
    return this.call?.id ?? '';
  }

  private get me(): string {
    return this.client.deviceId ?? '';
  }

  private async prepare(): Promise<void> {
    try {
      this.local = await navigator.mediaDevices.getUserMedia({
        audio: true,
        // Small: in a mesh each connection has its own encoder (up to 7 per sender).
        video:
          this.media === 'VIDEO'
            ? { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15 } }
            : false,
      });
    } catch (error) {
      throw new Error(
        `The ${this.media === 'VIDEO' ? 'camera or microphone' : 'microphone'} is not available: ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error },
      );
    }
    const identity = this.client.identity ?? '';
    const withoutKeys = this.switches.withoutKeys === true;
    if (this.transform === 'script-transform') {
      this.worker = new Worker(new URL('./sframe-worker.ts', import.meta.url), {
        type: 'module',
        name: 'sframe',
      });
      this.worker.onmessage = ({ data }: MessageEvent<{ id: number; stats: PipelineStats }>) => {
        this.statsWaiting.get(data.id)?.(data.stats);
        this.statsWaiting.delete(data.id);
      };
      this.post({ type: 'init', identity, withoutKeys });
    } else {
      this.pipeline = new FramePipeline(identity, withoutKeys);
    }
    this.unsubscribe.push(
      this.conversation.onEpochChange(() => {
        void this.rekey();
      }),
      this.client.calls.onCall((event) => {
        this.onCall(event);
      }),
      this.client.calls.onSignal((signal) => {
        // Before join() answers, the others may already offer (they heard JOINED first).
        if (this.call === null) this.earlySignals.push(signal);
        else this.applySignal(signal);
      }),
    );
    await this.rekey();
    if (this.epoch < 0n) throw new Error('You are not in this conversation any more.');
    this.iceServers = await this.client.calls.iceServers();
  }

  /** Reads the conversation's epoch and hands its export to the transform (new keys at once). */
  private async rekey(): Promise<void> {
    const snapshot: EpochSnapshot = await this.conversation.epochSecrets([
      { label: GENERIC_EXPORTER_LABEL, length: GENERIC_EXPORT_LENGTH },
    ]);
    if (snapshot === null) {
      this.toTransform(null);
      this.securityCode = '';
      this.changed();
      return;
    }
    if (snapshot.epoch <= this.epoch) return;
    const [generic] = snapshot.secrets;
    if (generic === undefined) return;
    this.epoch = snapshot.epoch;
    this.securityCode = await securityCode(generic);
    this.toTransform(snapshot);
    this.rekeyAt[snapshot.epoch.toString()] = Date.now();
    this.changed();
  }

  private toTransform(snapshot: EpochSnapshot): void {
    if (this.pipeline !== null) this.pipeline.setEpoch(snapshot);
    else this.post({ type: 'epoch', snapshot });
  }

  private post(message: ToWorker): void {
    this.worker?.postMessage(message);
  }

  /** Connects to every participant this page should offer to (the smaller device id offers). */
  private connectAll(): void {
    const call = this.call;
    if (call === null || this.ended !== null) return;
    for (const participant of call.participants) {
      if (participant.deviceId === this.me || this.peers.has(participant.deviceId)) continue;
      if (this.me < participant.deviceId) {
        void this.offer(participant.deviceId, participant.userId).catch((error: unknown) => {
          console.warn('call offer failed', error);
        });
      }
    }
    if (!this.switches.keepPeers) {
      for (const deviceId of [...this.peers.keys()]) {
        if (!call.participants.some((p) => p.deviceId === deviceId)) this.closePeer(deviceId);
      }
    }
    this.changed();
  }

  private peer(deviceId: string, userId: string): Peer {
    const known = this.peers.get(deviceId);
    if (known !== undefined) return known;
    const config: RTCConfiguration & { encodedInsertableStreams?: boolean } = {
      iceServers: this.iceServers.map((server) => ({ ...server })),
      ...(this.transform === 'insertable-streams' ? { encodedInsertableStreams: true } : {}),
    };
    const connection = new RTCPeerConnection(config);
    const peer: Peer = {
      deviceId,
      userId,
      connection,
      stream: new MediaStream(),
      pending: this.early.get(deviceId) ?? [],
      firstFrameAt: null,
    };
    this.early.delete(deviceId);
    this.peers.set(deviceId, peer);
    for (const track of this.local?.getTracks() ?? []) {
      const sender = connection.addTrack(track, this.local ?? new MediaStream());
      this.protectSender(sender);
      // The receiver of the same transceiver gets its transform now: Chromium 156 ignores one
      // set in `ontrack` on a transceiver that also sends (frames went to the decoder as they
      // came), measured.
      const transceiver = connection.getTransceivers().find((t) => t.sender === sender);
      if (transceiver !== undefined) this.protectReceiver(transceiver.receiver, deviceId);
    }
    connection.onicecandidate = ({ candidate }) => {
      if (candidate === null || this.call === null) return;
      this.sendSignal(deviceId, 'candidate', JSON.stringify(candidate.toJSON())).catch(
        (error: unknown) => {
          // One lost candidate need not stop the connection (others, or peer-reflexive ones).
          console.warn('call candidate not sent', error);
        },
      );
    };
    connection.ontrack = ({ track, receiver }) => {
      this.protectReceiver(receiver, deviceId);
      peer.stream.addTrack(track);
      this.watchFirstFrame();
      this.changed();
    };
    connection.onconnectionstatechange = () => {
      this.changed();
    };
    return peer;
  }

  private protectSender(sender: RTCRtpSender): void {
    if (this.transform === 'script-transform' && this.worker !== null) {
      const options: TransformOptions = { role: 'send', peer: '' };
      sender.transform = new RTCRtpScriptTransform(this.worker, options);
      return;
    }
    const { readable, writable } = (sender as unknown as WithEncodedStreams).createEncodedStreams();
    void this.pipeline?.attachSender(readable, writable).catch(() => undefined);
  }

  private protectReceiver(receiver: RTCRtpReceiver, deviceId: string): void {
    if (this.protectedReceivers.has(receiver)) return;
    this.protectedReceivers.add(receiver);
    if (this.transform === 'script-transform' && this.worker !== null) {
      const options: TransformOptions = { role: 'receive', peer: deviceId };
      receiver.transform = new RTCRtpScriptTransform(this.worker, options);
      return;
    }
    const { readable, writable } = (
      receiver as unknown as WithEncodedStreams
    ).createEncodedStreams();
    void this.pipeline?.attachReceiver(readable, writable, deviceId).catch(() => undefined);
  }

  private async offer(deviceId: string, userId: string, attempt = 1): Promise<void> {
    const { connection } = this.peer(deviceId, userId);
    preferVp8(connection);
    await connection.setLocalDescription(
      await connection.createOffer(attempt > 1 ? { iceRestart: true } : {}),
    );
    await this.sendSignal(deviceId, 'offer', connection.localDescription?.sdp ?? '');
    if (attempt >= MAX_OFFERS) return;
    setTimeout(() => {
      const state = this.peers.get(deviceId)?.connection.connectionState;
      if (this.ended !== null || (state !== 'new' && state !== 'connecting')) return;
      void this.offer(deviceId, userId, attempt + 1).catch((error: unknown) => {
        console.warn('call offer failed', error);
      });
    }, REOFFER_AFTER_MS);
  }

  /**
   * Sends one signal to a participant, counted for the stats. The SDK posts a conversation's
   * signals one after the other, in the order they were encrypted (OpenMLS decrypts a message
   * only a little behind the newest it has seen, so overtaken candidates were lost).
   */
  private async sendSignal(
    deviceId: string,
    kind: CallSignal['kind'],
    payload: string,
  ): Promise<void> {
    await this.client.calls.sendSignal(this.id, deviceId, { kind, payload });
    const counts = (this.signals[deviceId] ??= { sent: {}, received: {} });
    counts.sent[kind] = (counts.sent[kind] ?? 0) + 1;
  }

  private applySignal(signal: CallSignal): void {
    void this.onSignal(signal).catch((error: unknown) => {
      console.warn('call signal not applied', error);
    });
  }

  /** Applies the signals that came while the call was being joined. */
  private replayEarlySignals(): void {
    for (const signal of this.earlySignals.splice(0)) this.applySignal(signal);
  }

  private async onSignal(signal: CallSignal): Promise<void> {
    if (signal.callId !== this.call?.id || this.ended !== null) return;
    const counts = (this.signals[signal.fromDeviceId] ??= { sent: {}, received: {} });
    counts.received[signal.kind] = (counts.received[signal.kind] ?? 0) + 1;
    switch (signal.kind) {
      case 'offer': {
        const peer = this.peer(signal.fromDeviceId, signal.fromUserId);
        await peer.connection.setRemoteDescription({ type: 'offer', sdp: signal.payload });
        await this.flushCandidates(peer);
        preferVp8(peer.connection);
        await peer.connection.setLocalDescription(await peer.connection.createAnswer());
        await this.sendSignal(peer.deviceId, 'answer', peer.connection.localDescription?.sdp ?? '');
        break;
      }
      case 'answer': {
        const peer = this.peers.get(signal.fromDeviceId);
        if (peer === undefined) return;
        if (this.switches.loseFirstAnswer === true && !this.lostAnswer) {
          this.lostAnswer = true;
          return;
        }
        await peer.connection.setRemoteDescription({ type: 'answer', sdp: signal.payload });
        await this.flushCandidates(peer);
        break;
      }
      case 'candidate': {
        const peer = this.peers.get(signal.fromDeviceId);
        const candidate = JSON.parse(signal.payload) as RTCIceCandidateInit;
        if (peer === undefined) {
          const early = this.early.get(signal.fromDeviceId) ?? [];
          early.push(candidate);
          this.early.set(signal.fromDeviceId, early);
        } else if (peer.connection.remoteDescription === null) peer.pending.push(candidate);
        else await peer.connection.addIceCandidate(candidate);
        break;
      }
    }
  }

  private async flushCandidates(peer: Peer): Promise<void> {
    for (const candidate of peer.pending.splice(0)) {
      // One of an earlier offer (before an ICE restart) no longer applies: skipped.
      await peer.connection.addIceCandidate(candidate).catch(() => undefined);
    }
  }

  private onCall(event: CallEventInfo): void {
    if (event.call.id !== this.call?.id) return;
    this.call = event.call;
    const droppedHere = !event.call.participants.some((p) => p.deviceId === this.me);
    if (event.change === 'ENDED') {
      this.finish('The call ended.');
      return;
    }
    if (droppedHere) {
      // Dropped from the call. Removed from the conversation, this device hears it from its
      // SDK (the server's stream of the conversation ends with the commit, before its LEFT).
      this.finish(
        this.conversation.status === 'removed'
          ? 'You were removed from the conversation, and so from its call.'
          : this.conversation.status === 'left'
            ? 'You left the conversation, and so its call.'
            : 'You are no longer in this call.',
      );
      return;
    }
    this.connectAll();
  }

  /** Polls the receivers' statistics until each peer's first frame is decoded (a figure). */
  private watchFirstFrame(): void {
    if (this.framePoll !== null) return;
    this.framePoll = setInterval(() => {
      const waiting = [...this.peers.values()].filter((peer) => peer.firstFrameAt === null);
      if (waiting.length === 0 && this.framePoll !== null) {
        clearInterval(this.framePoll);
        this.framePoll = null;
        return;
      }
      for (const peer of waiting) {
        void received(peer.connection).then((stats) => {
          const decoded = this.media === 'VIDEO' ? stats.framesDecoded : stats.audioSamples;
          if (decoded > 0 && peer.firstFrameAt === null) {
            peer.firstFrameAt = Date.now();
            this.changed();
          }
        });
      }
    }, 50);
  }

  /** Mutes or unmutes the microphone (the track sends silence, still encrypted). */
  setMuted(muted: boolean): void {
    this.muted = muted;
    for (const track of this.local?.getAudioTracks() ?? []) track.enabled = !muted;
    this.changed();
  }

  /** Turns the camera off or on (the track sends black frames, still encrypted). */
  setCameraOff(off: boolean): void {
    this.cameraOff = off;
    for (const track of this.local?.getVideoTracks() ?? []) track.enabled = !off;
    this.changed();
  }

  /** Leaves the call (the last one out ends it); one already over for this page just closes. */
  async leave(): Promise<void> {
    const id = this.id;
    const over = this.ended !== null;
    this.finish('You left the call.');
    this.close();
    if (id !== '' && !over) await this.client.calls.leave(id);
  }

  /** Ends the call for everyone (its starter or an admin). */
  async end(): Promise<void> {
    await this.client.calls.end(this.id);
    this.finish('You ended the call.');
    this.close();
  }

  /** What the figures and the browser suite read: counters, never keys. */
  async stats(): Promise<CallStatsSnapshot> {
    const peers: CallStatsSnapshot['peers'] = {};
    for (const peer of this.peers.values()) {
      const stats = await received(peer.connection);
      peers[peer.deviceId] = {
        userId: peer.userId,
        connection: peer.connection.connectionState,
        firstFrameAt: peer.firstFrameAt,
        ...stats,
      };
    }
    return {
      callId: this.id,
      deviceId: this.me,
      transform: this.transform,
      epoch: this.epoch.toString(),
      securityCode: this.securityCode,
      startedAt: this.startedAt,
      rekeyAt: { ...this.rekeyAt },
      ended: this.ended,
      endedAt: this.endedAt,
      participants: this.call?.participants.map((participant) => participant.deviceId) ?? [],
      signals: structuredClone(this.signals),
      pipeline: await this.pipelineStats(),
      peers,
    };
  }

  private pipelineStats(): Promise<PipelineStats | null> {
    if (this.pipeline !== null) {
      return Promise.resolve(structuredClone(this.pipeline.stats));
    }
    if (this.worker === null) return Promise.resolve(null);
    const id = ++this.statsRequests;
    return new Promise((resolve) => {
      this.statsWaiting.set(id, resolve);
      this.post({ type: 'stats', id });
    });
  }

  private closePeer(deviceId: string): void {
    this.peers.get(deviceId)?.connection.close();
    this.peers.delete(deviceId);
  }

  /**
   * Over for this page. With `keepPeers` (the suite's removed participant) its connections stay
   * open to receive, but the camera and microphone stop: nothing more is sent.
   */
  private finish(reason: string): void {
    if (this.ended !== null) return;
    this.ended = reason;
    this.endedAt = Date.now();
    if (this.switches.keepPeers) {
      for (const track of this.local?.getTracks() ?? []) track.stop();
    } else {
      this.close();
    }
    this.changed();
  }

  /** Hangs up every connection, stops the camera and microphone, forgets the keys. */
  close(): void {
    this.ended ??= 'The call is over.';
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    this.unsubscribe = [];
    if (this.framePoll !== null) clearInterval(this.framePoll);
    this.framePoll = null;
    for (const deviceId of [...this.peers.keys()]) this.closePeer(deviceId);
    for (const track of this.local?.getTracks() ?? []) track.stop();
    this.post({ type: 'close' });
    this.worker?.terminate();
    this.worker = null;
    this.pipeline?.close();
    this.pipeline = null;
    for (const resolve of this.statsWaiting.values()) resolve(null);
    this.statsWaiting.clear();
  }
}

/**
 * VP8 first for video: the transform leaves exactly VP8's payload header in the clear
 * (vp8ClearBytes), which the receiving depacketizer needs; other codecs stay as fallbacks.
 */
function preferVp8(connection: RTCPeerConnection): void {
  const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs ?? [];
  const vp8 = codecs.filter((codec) => codec.mimeType.toLowerCase() === 'video/vp8');
  if (vp8.length === 0) return;
  const ordered = [...vp8, ...codecs.filter((codec) => !vp8.includes(codec))];
  for (const transceiver of connection.getTransceivers()) {
    if (transceiver.receiver.track.kind === 'video') transceiver.setCodecPreferences(ordered);
  }
}

/** The inbound counters of one connection: video frames decoded, audio packets and samples. */
async function received(connection: RTCPeerConnection): Promise<{
  framesDecoded: number;
  videoPackets: number;
  audioPackets: number;
  audioSamples: number;
}> {
  const result = { framesDecoded: 0, videoPackets: 0, audioPackets: 0, audioSamples: 0 };
  if (connection.connectionState === 'closed') return result;
  const report = await connection.getStats();
  report.forEach((entry: Record<string, unknown>) => {
    if (entry.type !== 'inbound-rtp') return;
    const number = (key: string) => (typeof entry[key] === 'number' ? entry[key] : 0);
    if (entry.kind === 'video') {
      result.framesDecoded += number('framesDecoded');
      result.videoPackets += number('packetsReceived');
    } else if (entry.kind === 'audio') {
      result.audioPackets += number('packetsReceived');
      result.audioSamples += number('totalSamplesReceived');
    }
  });
  return result;
}

/**
 * The page's calls: rings for calls others start in its conversations, the one call it is in,
 * and the `parleyCall` hook (statistics of the current call, for diagnostics and the suite).
 */
export class CallController {
  /** Calls ringing here (started by another device, not answered or declined yet), by id. */
  readonly ringing = new Map<string, CallInfo>();
  /** Running calls of conversations this device is in but not on the call, by conversation. */
  readonly joinable = new Map<string, CallInfo>();
  current: CallSession | null = null;
  /** Why the last call ended, or what went wrong (shown until the next call). */
  status: string | null = null;
  /** A call being started or joined. */
  busy = false;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly client: ParleyClient,
    private readonly changed: () => void,
  ) {
    this.unsubscribe = client.calls.onCall((event) => {
      this.onCall(event);
    });
    (globalThis as { parleyCall?: unknown }).parleyCall = {
      stats: () => this.current?.stats() ?? Promise.resolve(null),
    };
  }

  private onCall({ change, deviceId, call }: CallEventInfo): void {
    const me = this.client.deviceId;
    if (change === 'STARTED' && deviceId !== me && this.current?.id !== call.id) {
      this.ringing.set(call.id, call);
    }
    if (change === 'ENDED') this.joinable.delete(call.conversationId);
    else if (!call.participants.some((participant) => participant.deviceId === me)) {
      this.joinable.set(call.conversationId, call);
    }
    // Answered on this device, ended, or the ringing call was joined by another of my devices.
    if (
      change === 'ENDED' ||
      call.participants.some(
        (participant) => participant.userId === this.client.userId && participant.deviceId !== me,
      )
    ) {
      this.ringing.delete(call.id);
    }
    this.changed();
  }

  /** A change of the current call: one over for this page goes, its reason stays on show. */
  private callChanged(): void {
    const current = this.current;
    if (current?.ended != null && testSwitches().keepPeers !== true) {
      this.status = current.ended;
      this.current = null;
    }
    this.changed();
  }

  /** Starts a call in a conversation, or joins a ringing one (callId). */
  async open(conversation: Conversation, media: CallMedia, callId: string | null): Promise<void> {
    if (this.current !== null && this.current.ended === null) {
      throw new Error('You are already in a call: leave it first.');
    }
    this.current?.close();
    this.current = null;
    this.status = null;
    this.busy = true;
    this.changed();
    try {
      this.current = await CallSession.open(this.client, conversation, media, callId, () => {
        this.callChanged();
      });
      if (callId !== null) this.ringing.delete(callId);
      this.joinable.delete(conversation.id);
    } finally {
      this.busy = false;
      this.changed();
    }
  }

  /**
   * Looks for a running call of a conversation (one can join a call that started before one was
   * added, or while the page was closed).
   */
  async refresh(conversationId: string): Promise<void> {
    const call = await this.client.calls.running(conversationId);
    if (call === null || call.participants.some((p) => p.deviceId === this.client.deviceId)) {
      this.joinable.delete(conversationId);
    } else {
      this.joinable.set(conversationId, call);
    }
    this.changed();
  }

  /** Declines a ringing call here (the others are not told; it stops ringing). */
  decline(callId: string): void {
    this.ringing.delete(callId);
    this.changed();
  }

  /** Leaves the current call. */
  async leave(): Promise<void> {
    const call = this.current;
    if (call === null) return;
    this.current = null;
    this.status = 'You left the call.';
    this.changed();
    await call.leave();
  }

  /** Ends the current call for everyone. */
  async end(): Promise<void> {
    const call = this.current;
    if (call === null) return;
    await call.end();
    this.current = null;
    this.status = 'You ended the call.';
  }

  /** Hangs up and stops listening (sign-out, tab handed over). */
  close(): void {
    this.unsubscribe();
    this.current?.close();
    this.current = null;
    this.ringing.clear();
  }
}
