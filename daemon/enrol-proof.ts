import { fingerprintBytes } from './certificate';

/**
 * What an enrolling client signs with its key: a fixed label, the host's
 * certificate fingerprint and the token's secret. The host checks it with
 * the certificate the client sends, so a client enrols only a key it holds,
 * only with this host, only with this token.
 */
export function enrolmentProofData(hostFingerprint: string, secret: Buffer): Buffer {
  return Buffer.concat([Buffer.from('tsvz-enrol-v1\0'), fingerprintBytes(hostFingerprint), secret]);
}
