import * as fs from 'node:fs';
import * as path from 'node:path';
import { setXattr } from '../../lib/libc-fs';

/** Can the filesystem under `dir` hold user xattrs? (zfs-fuse and 6.1's tmpfs can't.) */
export function xattrsWork(dir: string): boolean {
  const probe = path.join(dir, '.xattr-probe');
  fs.writeFileSync(probe, '');
  try {
    setXattr(probe, 'user.probe', Buffer.from('1'));
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe);
  }
}
