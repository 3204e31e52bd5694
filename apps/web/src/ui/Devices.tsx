import type { DeviceInfo } from '@parley/client';
import { useCallback, useEffect, useRef, useState } from 'react';
import type { Session } from '../app/session.js';

const WHEN = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** The user's devices: this browser and the others; any one can be deleted. */
export function Devices({ session, onBack }: { session: Session; onBack: () => void }) {
  const [devices, setDevices] = useState<DeviceInfo[] | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const load = useCallback(async () => {
    setDevices(await session.clientOrThrow().devices());
  }, [session]);
  useEffect(() => {
    heading.current?.focus();
    void session.attempt(load);
  }, [load, session]);

  return (
    <div className="panel">
      <button type="button" className="secondary back" onClick={onBack}>
        <span aria-hidden="true">←</span> Conversations
      </button>
      <h2 tabIndex={-1} ref={heading}>
        Your devices
      </h2>
      <p>
        Each device holds its own keys. Deleting one removes it from every conversation; its
        messages cannot be read on it again.
      </p>
      {devices === null ? (
        <p role="status">Loading…</p>
      ) : (
        <ul className="devices">
          {devices.map((device) => (
            <li key={device.id}>
              <span className="device-name">
                {device.name}
                {device.current && <strong> (this browser)</strong>}
              </span>
              <span className="meta">added {WHEN.format(device.createdAt)}</span>
              <button
                type="button"
                className="secondary danger"
                onClick={() => {
                  if (
                    device.current &&
                    !window.confirm('Delete this browser’s device? Its messages here are lost.')
                  )
                    return;
                  void session.attempt(async () => {
                    await session.deleteDevice(device.id);
                    if (!device.current) await load();
                  });
                }}
              >
                Delete<span className="visually-hidden"> {device.name}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
