import type { DriverCapabilities, SendFormat } from './driver';

/**
 * Pick the stream format for a transfer (Incus's migration negotiation): the
 * sender's most preferred native format the receiver also speaks, else the
 * universal tar stream that every driver can produce and take.
 */
export function negotiateFormat(sender: DriverCapabilities, receiver: DriverCapabilities): SendFormat {
  return sender.sendFormats.find((f) => f !== 'tar' && receiver.sendFormats.includes(f)) ?? 'tar';
}

/** Can a transfer in `format` carry only the difference from a parent snapshot? */
export function canSendIncremental(sender: DriverCapabilities, format: SendFormat): boolean {
  return format !== 'tar' && sender.incrementalSend;
}
