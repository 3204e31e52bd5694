/**
 * The shortest and longest disappearing-message timers, in seconds; 0 turns the timer off. The
 * server refuses anything else, and the SDK before anything is encrypted.
 */
export const MESSAGE_TIMER_RANGE = { min: 5, max: 86_400 } as const;

/** Whether `seconds` is a message timer: 0 (off) or 5–86,400. */
export function isValidMessageTimer(seconds: number): boolean {
  return (
    seconds === 0 ||
    (Number.isSafeInteger(seconds) &&
      seconds >= MESSAGE_TIMER_RANGE.min &&
      seconds <= MESSAGE_TIMER_RANGE.max)
  );
}
