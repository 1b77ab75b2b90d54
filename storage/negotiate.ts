import type { DriverCapabilities, SendFormat } from './driver';

/**
 * Pick the stream format for a transfer (Incus's migration negotiation): the
 * sender's most preferred native format the receiver also speaks, else the
 * universal tar stream that every driver can produce and take.
 */
export function negotiateFormat(sender: DriverCapabilities, receiver: DriverCapabilities): SendFormat {
  return pickFormat(sender.sendFormats, receiver.sendFormats);
}

/** The same choice from the formats alone (a peer's offer, this pool's): the first native one both take, else tar. */
export function pickFormat(offered: readonly SendFormat[], accepted: readonly SendFormat[]): SendFormat {
  return offered.find((f) => f !== 'tar' && accepted.includes(f)) ?? 'tar';
}

/** Can a transfer in `format` carry only the difference from a parent snapshot? */
export function canSendIncremental(sender: DriverCapabilities, format: SendFormat): boolean {
  return format !== 'tar' && sender.incrementalSend;
}
