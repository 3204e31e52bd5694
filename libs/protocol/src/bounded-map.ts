/**
 * Sets `key` in `map` as its newest entry (a Map iterates in insertion order), then forgets the
 * oldest entries beyond `limit`: a memory of recent things that cannot grow without bound.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= limit) break;
    map.delete(oldest);
  }
}
