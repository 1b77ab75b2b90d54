import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';

/** Checkpoint archives taken apart and put back together, as a forger would. */

export type Item = { header: tar.Header; data: Buffer };

export async function readTar(file: string): Promise<Item[]> {
  const items: Item[] = [];
  for await (const entry of tar.extract().end(fs.readFileSync(file)) as unknown as AsyncIterable<tar.ExtractEvents['entry'][1]>) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    items.push({ header: entry.header, data: Buffer.concat(chunks) });
  }
  return items;
}

export async function writeTar(file: string, items: { header: Partial<tar.Header> & { name: string }; data: Buffer }[]): Promise<void> {
  const pack = tar.pack();
  for (const { header, data } of items) pack.entry({ ...header, size: data.length }, data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(Buffer.from(chunk as Uint8Array));
  fs.writeFileSync(file, Buffer.concat(chunks));
}

/** Set entry `name`'s data and its size and sha256 in the manifest (items[0]). */
export function replaceFile(items: Item[], name: string, data: Buffer): void {
  const item = items.find((i) => i.header.name === name);
  if (!item) throw new Error(`no ${name} in the archive`);
  item.data = data;
  const manifest = JSON.parse(items[0].data.toString()) as { files: { path: string; size: number; sha256: string }[] };
  const f = manifest.files.find((x) => x.path === name)!;
  f.size = data.length;
  f.sha256 = crypto.createHash('sha256').update(data).digest('hex');
  items[0].data = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
}

/** A key and the fingerprint it signs as: the root's own host identity, or a stranger's. */
export interface SigningKey {
  privateKey: crypto.KeyObject;
  fingerprint: string;
}

export function hostKeyOf(rootDir: string): SigningKey {
  const dir = path.join(rootDir, 'daemon');
  const cert = new crypto.X509Certificate(fs.readFileSync(path.join(dir, 'host.crt')));
  return { privateKey: crypto.createPrivateKey(fs.readFileSync(path.join(dir, 'host.key'))), fingerprint: cert.fingerprint256 };
}

export function strangerKey(): SigningKey {
  const fingerprint = crypto.randomBytes(32).toString('hex').toUpperCase().match(/../g)!.join(':');
  return { privateKey: crypto.generateKeyPairSync('ed25519').privateKey, fingerprint };
}

/** Sign the (edited) manifest again with `key`, as manifest.sig right after it. */
export function resign(items: Item[], key: SigningKey, name = 'forger'): void {
  const sig = { format: 'tsvz-signature', version: 1, algorithm: 'ed25519', signer: key.fingerprint, signerName: name, signature: crypto.sign(null, items[0].data, key.privateKey).toString('base64') };
  const entry = items.find((i) => i.header.name === 'manifest.sig');
  const data = Buffer.from(JSON.stringify(sig));
  if (entry) entry.data = data;
  else items.splice(1, 0, { header: { ...items[0].header, name: 'manifest.sig' }, data });
}
