import type { CallInfo, CallMedia, Conversation } from '@parley/client';
import { useEffect, useRef } from 'react';
import type { CallSession, Peer } from '../app/call-session.js';
import type { Session } from '../app/session.js';

/** Incoming calls: who calls, in which conversation, with Accept and Decline. */
export function RingBanner({ session }: { session: Session }) {
  const calls = session.calls;
  const callers = [...(calls?.ringing.values() ?? [])].flatMap((call) =>
    call.participants.map((participant) => participant.userId),
  );
  useEffect(() => {
    void session.learnNames(callers);
  });
  if (calls === null || calls.ringing.size === 0) return null;
  const client = session.clientOrThrow();
  return (
    <section className="ring" aria-label="Incoming calls">
      {[...calls.ringing.values()].map((call) => {
        const conversation = client.conversations().find((c) => c.id === call.conversationId);
        if (conversation === undefined) return null;
        const caller = call.participants.find((p) => p.deviceId === call.startedByDeviceId);
        const who = session.nameOf(caller?.userId ?? null);
        const what = call.media === 'VIDEO' ? 'video call' : 'call';
        return (
          <p key={call.id} className="ring-call" role="alert">
            <span>
              {who} is starting a {what} in {session.titleOf(conversation)}
            </span>{' '}
            <button
              type="button"
              disabled={calls.busy}
              onClick={() =>
                void session.attempt(() => calls.open(conversation, call.media, call.id))
              }
            >
              Accept
            </button>{' '}
            <button
              type="button"
              className="secondary"
              onClick={() => {
                calls.decline(call.id);
              }}
            >
              Decline
            </button>
          </p>
        );
      })}
    </section>
  );
}

/** The chat header's call buttons: start an audio or video call, or join the running one. */
export function CallButtons({
  session,
  conversation,
}: {
  session: Session;
  conversation: Conversation;
}) {
  const calls = session.calls;
  useEffect(() => {
    // A call that started before this device was added, or while the page was closed.
    void calls?.refresh(conversation.id).catch(() => undefined);
  }, [calls, conversation.id]);
  if (calls === null || conversation.status !== 'active') return null;
  const inCall = calls.current !== null;
  const ringing: CallInfo | undefined =
    [...calls.ringing.values()].find((call) => call.conversationId === conversation.id) ??
    calls.joinable.get(conversation.id);
  const start = (media: CallMedia) =>
    void session.attempt(() => calls.open(conversation, media, ringing?.id ?? null));
  if (ringing !== undefined && !inCall) {
    return (
      <button
        type="button"
        disabled={calls.busy}
        onClick={() => {
          start(ringing.media);
        }}
      >
        Join call
      </button>
    );
  }
  return (
    <>
      <button
        type="button"
        className="secondary"
        disabled={inCall || calls.busy}
        onClick={() => {
          start('AUDIO');
        }}
      >
        Start call
      </button>
      <button
        type="button"
        className="secondary"
        disabled={inCall || calls.busy}
        onClick={() => {
          start('VIDEO');
        }}
      >
        Start video call
      </button>
    </>
  );
}

/** The current call: tiles, the security code, mute, camera, leave and end; or why it ended. */
export function CallPanel({ session }: { session: Session }) {
  const calls = session.calls;
  const peers = [...(calls?.current?.peers.values() ?? [])].map((peer) => peer.userId);
  useEffect(() => {
    void session.learnNames(peers);
  });
  if (calls === null) return null;
  const call = calls.current;
  if (call === null) {
    return calls.status === null ? null : (
      <p className="call-status" role="status">
        {calls.status}{' '}
        <button
          type="button"
          className="link"
          onClick={() => {
            calls.status = null;
            session.changed();
          }}
        >
          Dismiss
        </button>
      </p>
    );
  }
  const title = session.titleOf(call.conversation);
  const canEnd =
    call.call?.startedByDeviceId === session.client?.deviceId || call.conversation.role === 'ADMIN';
  return (
    <section className="call" aria-label={`Call in ${title}`}>
      <h2>
        {call.media === 'VIDEO' ? 'Video call' : 'Call'} in {title}
      </h2>
      {call.ended !== null && <p role="status">{call.ended}</p>}
      <p className="security-code">
        <span id="security-code-label">
          Security code (compare it aloud: the same on every screen means no one else holds the
          call’s keys)
        </span>
        <output aria-labelledby="security-code-label" className="code">
          {call.securityCode === '' ? 'none: you are out of the group' : call.securityCode}
        </output>
      </p>
      <ul className="tiles" aria-label="Participants">
        <li className="tile own">
          <LocalVideo call={call} />
          <span className="tile-name">
            You{call.muted ? ' (muted)' : ''}
            {call.cameraOff ? ' (camera off)' : ''}
          </span>
        </li>
        {[...call.peers.values()].map((peer) => (
          <li key={peer.deviceId} className="tile" data-device={peer.deviceId}>
            <RemoteVideo peer={peer} label={session.nameOf(peer.userId)} />
            <span className="tile-name">
              {session.nameOf(peer.userId)}
              <span className="tile-state"> · {connectionText(peer)}</span>
            </span>
          </li>
        ))}
      </ul>
      {call.peers.size === 0 && <p role="status">Waiting for others to join…</p>}
      <div className="call-actions">
        <button
          type="button"
          className="secondary"
          aria-pressed={call.muted}
          onClick={() => {
            call.setMuted(!call.muted);
          }}
        >
          {call.muted ? 'Unmute' : 'Mute'}
        </button>
        {call.media === 'VIDEO' && (
          <button
            type="button"
            className="secondary"
            aria-pressed={call.cameraOff}
            onClick={() => {
              call.setCameraOff(!call.cameraOff);
            }}
          >
            {call.cameraOff ? 'Camera on' : 'Camera off'}
          </button>
        )}
        <button
          type="button"
          className="secondary danger"
          onClick={() => void session.attempt(() => calls.leave())}
        >
          Leave call
        </button>
        {canEnd && (
          <button
            type="button"
            className="secondary danger"
            onClick={() => void session.attempt(() => calls.end())}
          >
            End call for everyone
          </button>
        )}
      </div>
    </section>
  );
}

function connectionText(peer: Peer): string {
  switch (peer.connection.connectionState) {
    case 'new':
    case 'connecting':
      return 'connecting…';
    case 'connected':
      return peer.firstFrameAt === null ? 'connected' : 'encrypted';
    case 'disconnected':
      return 'reconnecting…';
    case 'failed':
      return 'connection failed';
    case 'closed':
      return 'left';
  }
}

function LocalVideo({ call }: { call: CallSession }) {
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (video.current !== null) video.current.srcObject = call.local;
  }, [call.local]);
  if (call.media !== 'VIDEO') return <span className="avatar" aria-hidden="true" />;
  // Muted: one's own microphone is not played back.
  return <video ref={video} autoPlay playsInline muted aria-label="Your camera" />;
}

function RemoteVideo({ peer, label }: { peer: Peer; label: string }) {
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (video.current !== null && video.current.srcObject !== peer.stream) {
      video.current.srcObject = peer.stream;
    }
  });
  return <video ref={video} autoPlay playsInline aria-label={`Video of ${label}`} />;
}
